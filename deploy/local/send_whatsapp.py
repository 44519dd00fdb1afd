"""Post a WhatsApp Cloud API delivery to the local ingest, signed as Meta signs it.

    .venv/bin/python deploy/local/send_whatsapp.py               # deploy/local/sample-whatsapp.json
    .venv/bin/python deploy/local/send_whatsapp.py delivery.json --port 8005 --dir .local

The app secret is INGEST_WHATSAPP_APP_SECRET when it is set, else the one `make dev` keeps in
the data folder; it is never printed. Every message gets a new id and the current time, so
each run is a new message; --as-is sends the file unchanged (twice makes one interaction).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

from crm_ingest.domain.whatsapp import sign

HERE = Path(__file__).resolve().parent


def fresh(delivery: dict[str, object]) -> dict[str, object]:
    """The delivery with a new id and the current time on every message."""
    for entry in delivery.get("entry") or []:  # type: ignore[attr-defined]
        for change in entry.get("changes") or []:
            for message in change.get("value", {}).get("messages") or []:
                message["id"] = f"wamid.dev-{uuid.uuid4().hex}"
                message["timestamp"] = str(int(time.time()))
    return delivery


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", default=str(HERE / "sample-whatsapp.json"))
    parser.add_argument("--port", type=int, default=8005, help="ingest's HTTP port (default 8005)")
    parser.add_argument("--dir", default=str(HERE.parents[1] / ".local"), help="the data folder of make dev")
    parser.add_argument("--as-is", action="store_true", help="send the file unchanged")
    args = parser.parse_args()
    secret = os.environ.get("INGEST_WHATSAPP_APP_SECRET")
    if not secret:
        path = Path(args.dir) / "whatsapp-app-secret"
        if not path.exists():
            print(f"error: no {path}: start the platform with `make dev` first", file=sys.stderr)
            return 1
        secret = path.read_text().strip()
    raw = Path(args.file).read_bytes()
    body = raw if args.as_is else json.dumps(fresh(json.loads(raw))).encode()
    response = httpx.post(f"http://127.0.0.1:{args.port}/v1/channels/whatsapp/webhook", content=body,
                          headers={"Content-Type": "application/json",
                                   "X-Hub-Signature-256": sign(secret.encode(), body)})
    print(response.status_code, response.text)
    return 0 if response.is_success else 1


if __name__ == "__main__":
    sys.exit(main())
