"""The config's vocabulary without Hydra or torch: the schema (every knob, its type, base value and rule),
the rules themselves, each task's metrics, and the keys that cannot change a result."""
