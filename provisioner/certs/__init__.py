"""TLS certificates: issued by the provisioner through ACME DNS-01, kept in Secrets Manager.

plan.py is pure (grouping, renewal, resources); issue.py talks ACME; dns01.py writes challenge
records in Cloudflare; provider.py plugs the kinds into the engine's plan/apply loop.
"""
