"""The clock process: Graph subscriptions, directory delta and resync sweep on schedules."""
