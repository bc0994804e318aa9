"""Where work runs and what it cost: the router (plan in the cloud or run locally, and
why), the pool of local tiers that executes every request, and the record of calls."""
