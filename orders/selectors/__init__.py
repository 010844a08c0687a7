"""Reads of the orders app, one module per subject.

- ``orders``: orders with their signals (API list/detail, reports' filters);
- ``executions``: the fill book as rows;
- ``risk_limits``: the limits risk staff edit;
- ``reconciliation``: reconciliation runs and their discrepancies;
- ``pnl``: the PnL report by symbol or strategy, from the position ledger;
- ``validation``: positions recomputed from their executions in one SQL statement.

Filtering lives with the reads (django-filter FilterSets validated into 400s); pagination lives in the views.
Every filter maps onto an index of the tables (the models' Meta.indexes and orders/migrations/*office*).
"""
