"""Study orchestration: spec, plan, store, executors."""
