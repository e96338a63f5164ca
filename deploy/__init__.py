"""Deployment checks that run from the repository root with the project venv
(``python -m deploy.smoke_check``, ``python -m deploy.proxy_check``) and the nginx configuration
reader the deploy tests share with them."""
