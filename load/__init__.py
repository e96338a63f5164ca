"""Load testing: locust traffic (``locustfile.py``), its checks (``traffic.py``), the driver."""
