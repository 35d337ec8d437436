"""Review's tests: `unit/` (the pure domain) and `integration/` (database, bus, HTTP, CLI).

pytest puts this folder on `sys.path` (a conftest outside a package), so both import the shared
helpers of `review_testkit.py`.
"""
