"""The cost of networks: exact counts, the additive cost model of a space, its latency table and the budget
penalties of a search."""
