"""The domain, free of Pipecat, FastAPI and HTTP shapes, grouped by subject:
`books/` (money, prices, ledger, budgets, payments), `memory/`, `calls/`,
`accounts/`; `settings`, `runtime` (the stores a process shares), `errors`
(the refusals the HTTP layer maps to statuses) and `engines` (which engine runs
each service, from settings) sit at the top.
"""
