"""Development tools beside the product, for the tests, the demo and the benchmark.

- devstack: throwaway MariaDB, Apache and background processes on loopback.
- bulk_servers: many pending servers (rows and their droplets) at once.

They may import cloudprovisioner; cloudprovisioner never imports them, and its
wheel leaves them out (tests/test_layout.py checks both).
"""
