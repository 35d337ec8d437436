"""The pricer's domain core (pure): policies, pricing, calibration, settlement, simulation and DIP."""
