"""The pricer's pure core: policies, DRG and DIP pricing of a grouped case, calibration,
simulation and settlement (docs/domain.md §6–§9). No database, web or bus here."""
