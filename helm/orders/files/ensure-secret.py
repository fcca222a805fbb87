# Creates or completes the release's password Secret in the cluster (python3 standard library only;
# the secrets Job runs it in the orders-service image). A render never generates a password, so
# Helm, Argo CD, Flux and `helm template | kubectl apply` render the same manifests; this step
# makes the missing passwords once and keeps them:
#   - a key given in the chart's values (the files in GIVEN_DIR) is written as given;
#   - a key in GENERATE that the Secret lacks gets a new random password;
#   - every other key the Secret holds is left alone.
# It talks to the API server with the pod's service account (create; get and patch on this one
# Secret only). Passwords are never printed: the log names keys only.
import base64
import json
import os
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.request

ACCOUNT = os.environ.get("SERVICE_ACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
API = os.environ.get("KUBERNETES_API", "")
if not API:
    HOST = os.environ["KUBERNETES_SERVICE_HOST"]
    HOST = f"[{HOST}]" if ":" in HOST else HOST  # an IPv6 address
    API = f"https://{HOST}:{os.environ['KUBERNETES_SERVICE_PORT']}"
if not API.startswith("https://"):
    raise SystemExit("the API server must be reached over https")
NAME = os.environ["SECRET_NAME"]
NAMESPACE = os.environ["SECRET_NAMESPACE"]
LABELS = json.loads(os.environ.get("SECRET_LABELS", "{}"))
GENERATE = os.environ.get("GENERATE", "").split()
GIVEN_DIR = os.environ.get("GIVEN_DIR", "/given")


def call(method, path, body=None, content_type="application/json"):
    with open(os.path.join(ACCOUNT, "token")) as token:
        headers = {"Authorization": "Bearer " + token.read().strip(), "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = content_type
    # https only (checked above), verified against the service account's CA.
    request = urllib.request.Request(API + path, data=data, headers=headers, method=method)  # noqa: S310
    context = ssl.create_default_context(cafile=os.path.join(ACCOUNT, "ca.crt"))
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, None


def given():
    values = {}
    if os.path.isdir(GIVEN_DIR):
        for key in sorted(os.listdir(GIVEN_DIR)):
            path = os.path.join(GIVEN_DIR, key)
            if not key.startswith(".") and os.path.isfile(path):
                with open(path, "rb") as handle:
                    values[key] = base64.b64encode(handle.read()).decode()
    return values


def new_password():
    return base64.b64encode(secrets.token_urlsafe(24).encode()).decode()


def ensure():
    path = f"/api/v1/namespaces/{NAMESPACE}/secrets"
    wanted = given()
    status, current = call("GET", f"{path}/{NAME}")
    if status == 404:
        data = dict(wanted)
        for key in GENERATE:
            data.setdefault(key, new_password())
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": LABELS},
            "type": "Opaque",
            "data": data,
        }
        status, _ = call("POST", path, body)
        if status == 409:
            return False  # created meanwhile by another run: read it again
        if status != 201:
            raise SystemExit(f"creating Secret {NAME} failed: HTTP {status}")
        print("created Secret {} with keys {}".format(NAME, ", ".join(sorted(data))))
        return True
    if status != 200:
        raise SystemExit(f"reading Secret {NAME} failed: HTTP {status}")
    data = current.get("data") or {}
    patch = {key: value for key, value in wanted.items() if data.get(key) != value}
    for key in GENERATE:
        if key not in data and key not in patch:
            patch[key] = new_password()
    if not patch:
        print(f"Secret {NAME} holds every key; nothing changed")
        return True
    status, _ = call(
        "PATCH",
        f"{path}/{NAME}",
        {"data": patch},
        content_type="application/merge-patch+json",
    )
    if status != 200:
        raise SystemExit(f"updating Secret {NAME} failed: HTTP {status}")
    print("updated Secret {}: keys {}".format(NAME, ", ".join(sorted(patch))))
    return True


for attempt in range(5):
    if ensure():
        sys.exit(0)
    time.sleep(1 + attempt)
raise SystemExit(f"Secret {NAME} kept changing under this Job")
