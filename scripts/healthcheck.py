"""Container health check: exit 0 when the API's readiness answers 200, else 1.

Standard library only (the image has no curl). With API_AUTH=required, readiness needs a key:
HEALTHCHECK_API_KEY."""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('PORT', '8080')}/health/ready"
request = urllib.request.Request(url)
if key := os.environ.get("HEALTHCHECK_API_KEY"):
    request.add_header("Authorization", f"Bearer {key}")
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:  # HTTPError (4xx, 5xx), URLError, timeouts
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
