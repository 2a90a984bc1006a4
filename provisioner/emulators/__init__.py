"""Local emulators of the clouds `provision` talks to (used by the sandbox and the tests).

- `aws.AwsEmulator`: moto in server mode behind our recording / fault-injecting WSGI layer.
- `cloudflare.CloudflareEmulator`: the Cloudflare v4 API subset the DNS code uses.
`python -m provisioner.emulators serve ...` runs both in one process (see `__main__`).
"""
