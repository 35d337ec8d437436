"""Review's domain core (pure): monitoring rules and how a batch of priced cases is reviewed."""
