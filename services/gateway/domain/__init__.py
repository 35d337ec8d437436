"""The gateway's pure rules: how stage events are filed into the read model, and who may do what."""
