"""Physics-informed degradation simulators (filled in by the degradations work)."""
