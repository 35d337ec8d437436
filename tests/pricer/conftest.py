"""The pricer's tests: `pricer_testkit` (this folder) stays importable from `unit/` and
`integration/`, because pytest (prepend import mode, no `__init__.py`) puts the folder of a
conftest on `sys.path`."""
