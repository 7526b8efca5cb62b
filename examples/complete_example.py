"""The guide's "Complete Example: Python Script", unchanged but for the URLs and credentials,
which come from the environment. It uses ``requests``, which the package itself does not
need: install the ``examples`` extra first.

    .venv/bin/pip install -e ".[examples]"        # requests, for this script
    CENTRALI_URL=http://127.0.0.1:8000 CENTRALI_CLIENT_ID=ci_… CENTRALI_CLIENT_SECRET=sk_… \
    CENTRALI_WORKSPACE=acme-corp .venv/bin/python examples/complete_example.py

The workspace needs a ``products`` structure (see the README's workspace API section).
"""

import os
from datetime import datetime, timedelta

import requests

BASE_URL = os.environ.get("CENTRALI_URL", "https://centrali.localhost")
TOKEN_URL = os.environ.get("CENTRALI_TOKEN_URL", f"{BASE_URL}/oidc/token")


class CentraliClient:
    def __init__(self, client_id, client_secret, workspace_slug, base_url=BASE_URL):
        self.client_id = client_id
        self.client_secret = client_secret
        self.workspace_slug = workspace_slug
        self.base_url = base_url
        self.token_url = TOKEN_URL
        self.access_token = None
        self.token_expiry = None

    def get_access_token(self):
        """Obtain a new JWT access token"""
        if self.access_token and self.token_expiry and datetime.now() < self.token_expiry:
            return self.access_token

        payload = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": "openid",
        }

        response = requests.post(
            self.token_url,
            data=payload,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

        if response.status_code != 200:
            raise Exception(f"Failed to obtain token: {response.text}")

        token_data = response.json()
        self.access_token = token_data["access_token"]
        expires_in = token_data.get("expires_in", 25200)
        self.token_expiry = datetime.now() + timedelta(
            seconds=expires_in - 300
        )  # Refresh 5 min early

        return self.access_token

    def make_request(self, method, endpoint, **kwargs):
        """Make an authenticated API request"""
        token = self.get_access_token()
        headers = kwargs.pop("headers", {})
        headers["Authorization"] = f"Bearer {token}"

        url = f"{self.base_url}/workspace/{self.workspace_slug}/api/v1{endpoint}"
        response = requests.request(method, url, headers=headers, **kwargs)

        return response


# Usage
client = CentraliClient(
    client_id=os.environ["CENTRALI_CLIENT_ID"],
    client_secret=os.environ["CENTRALI_CLIENT_SECRET"],
    workspace_slug=os.environ.get("CENTRALI_WORKSPACE", "acme-corp"),
)

# List structures
response = client.make_request("GET", "/structures")
structures = response.json()
print(f"Found {len(structures['data'])} structures")

# Create a record
response = client.make_request(
    "POST",
    "/records",
    json={"recordSlug": "products", "data": {"name": "Laptop Pro", "price": 1299.99}},
)
record = response.json()
print(f"Created record: {record['id']}")
