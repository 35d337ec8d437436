-- One database per service: each service owns its tables.
CREATE DATABASE ingest;
CREATE DATABASE grouper;
CREATE DATABASE pricer;
CREATE DATABASE review;
CREATE DATABASE gateway;
