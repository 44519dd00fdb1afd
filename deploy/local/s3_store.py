"""A small S3 server for the broker's storage in the chaos run, so that the broker can be
killed and restarted with its topics, records and committed offsets kept.

    .venv/bin/python deploy/local/s3_store.py --port 9000 [--bucket tansu] [--log-requests]

tansu (the local Kafka-protocol broker) keeps its data on S3 when started with
``--storage-engine s3://BUCKET/``. Two ready-made S3 servers from the registries failed it
(docs/proof.md): s3rver ignores conditional writes, and tansu then overwrote acknowledged
records after a restart; moto honours them but scans every key of the bucket on every list, and
tansu lists a partition's records on every fetch, so a 10,000-interaction run crawled to a few
interactions a second as the bucket grew.

This server does only what tansu asks of S3, and does it the way S3 does:

- objects: PUT (``If-None-Match: *`` creates only, ``If-Match: ETAG`` replaces only that
  version; otherwise 412 ``PreconditionFailed``), GET (with ``Range``, ``If-Match``,
  ``If-None-Match``), HEAD, DELETE, and the multi-object delete (``POST ?delete``);
- ListObjectsV2 with prefix, delimiter, start-after, max-keys and continuation tokens, from
  keys kept sorted (a list costs a binary search plus the keys it returns);
- buckets: PUT creates one, HEAD tells whether it exists.

Everything is held in memory in this one process, and every request is handled without
yielding between its check and its write, so conditional writes are atomic. Data survives a
restart of the broker, not of this server: the chaos run never kills it. The rest of S3
(multipart uploads, copies, versions, listing buckets) answers 501 ``NotImplemented``, so an
unexpected request is loud, never silently wrong. Request signatures are not checked: it
listens on loopback for the local broker only. Not for production.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, unquote
from xml.etree import ElementTree

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000
LAST_CHAR = "\U0010ffff"  # sorts after every character a key can hold


@dataclass(frozen=True)
class Blob:
    data: bytes
    etag: str  # quoted, as S3 sends it
    modified: float


@dataclass
class Bucket:
    blobs: dict[str, Blob] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)  # the keys, sorted

    def put(self, key: str, data: bytes) -> Blob:
        if key not in self.blobs:
            bisect.insort(self.names, key)
        blob = Blob(data, f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"', time.time())
        self.blobs[key] = blob
        return blob

    def delete(self, key: str) -> None:
        if self.blobs.pop(key, None) is not None:
            del self.names[bisect.bisect_left(self.names, key)]

    def list(self, prefix: str, delimiter: str, after: str, skip_under: bool, max_keys: int
             ) -> tuple[list[str], list[str], str | None]:
        """Keys and common prefixes after ``after`` (and, when ``after`` is a common prefix,
        after everything under it), up to ``max_keys`` of both together; and the token that
        continues the listing, if it was cut short."""
        if max_keys <= 0:
            return [], [], None
        start = max(prefix, after)
        index = bisect.bisect_left(self.names, after + LAST_CHAR if skip_under else start)
        if not skip_under and after and index < len(self.names) and self.names[index] == after:
            index += 1  # start-after is exclusive
        keys: list[str] = []
        prefixes: list[str] = []
        while index < len(self.names):
            name = self.names[index]
            if not name.startswith(prefix):
                break
            if len(keys) + len(prefixes) == max_keys:
                last_prefix = bool(prefixes) and (not keys or prefixes[-1] > keys[-1])
                return keys, prefixes, _token(prefixes[-1] if last_prefix else keys[-1], last_prefix)
            cut = name.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                common = name[:cut + len(delimiter)]
                prefixes.append(common)
                index = bisect.bisect_left(self.names, common + LAST_CHAR, index)
                continue
            keys.append(name)
            index += 1
        return keys, prefixes, None


def _token(after: str, is_prefix: bool) -> str:
    return base64.urlsafe_b64encode(f"{'p' if is_prefix else 'k'}{after}".encode()).decode()


def _untoken(token: str) -> tuple[str, bool]:
    raw = base64.urlsafe_b64decode(token.encode()).decode()
    return raw[1:], raw[0] == "p"


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Store:
    """The ASGI application: one dict of buckets, one request at a time between awaits."""

    def __init__(self, buckets: list[str], log_requests: bool = False) -> None:
        self.buckets = {name: Bucket() for name in buckets}
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
                await send({"type": f"{event}.complete"})
                if event == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        method, path = scope["method"], unquote(scope["path"])
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode(), keep_blank_values=True).items()}
        if self.log_requests:
            print(method, path, query, {k: v for k, v in headers.items() if k.startswith(("if-", "range"))},
                  file=sys.stderr, flush=True)
        try:
            status, out_headers, out = self.handle(method, path, query, headers, body)
        except S3Error as exc:
            status, out_headers, out = exc.status, {"content-type": "application/xml"}, _error(exc, path)
        if method == "HEAD":
            out_headers.setdefault("content-length", str(len(out)))
            out = b""
        else:
            out_headers["content-length"] = str(len(out))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in out_headers.items()]})
        await send({"type": "http.response.body", "body": out})

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        bucket_name, _, key = path.lstrip("/").partition("/")
        if not bucket_name:
            raise S3Error(501, "NotImplemented", "listing buckets is not supported")
        if not key:
            return self.on_bucket(method, bucket_name, query, body)
        bucket = self._bucket(bucket_name)
        if "uploads" in query or "uploadId" in query or "x-amz-copy-source" in headers:
            raise S3Error(501, "NotImplemented", "multipart uploads and copies are not supported")
        if method == "PUT":
            return self.put(bucket, key, headers, body)
        if method in ("GET", "HEAD"):
            return self.get(bucket, key, headers)
        if method == "DELETE":
            bucket.delete(key)
            return 204, {}, b""
        raise S3Error(501, "NotImplemented", f"{method} on an object is not supported")

    def _bucket(self, name: str) -> Bucket:
        bucket = self.buckets.get(name)
        if bucket is None:
            raise S3Error(404, "NoSuchBucket", f"bucket {name} does not exist")
        return bucket

    def on_bucket(self, method: str, name: str, query: dict[str, str], body: bytes
                  ) -> tuple[int, dict[str, str], bytes]:
        if method == "PUT" and not query:
            self.buckets.setdefault(name, Bucket())
            return 200, {}, b""
        bucket = self._bucket(name)
        if method == "HEAD":
            return 200, {}, b""
        if method == "GET" and query.get("list-type") == "2":
            return self.list_objects(name, bucket, query)
        if method == "POST" and "delete" in query:
            return self.delete_objects(bucket, body)
        raise S3Error(501, "NotImplemented", f"{method} {sorted(query)} on a bucket is not supported")

    def put(self, bucket: Bucket, key: str, headers: dict[str, str], body: bytes
            ) -> tuple[int, dict[str, str], bytes]:
        current = bucket.blobs.get(key)
        if headers.get("if-none-match") == "*" and current is not None:
            raise S3Error(412, "PreconditionFailed", "the object exists (If-None-Match: *)")
        wanted = headers.get("if-match")
        if wanted is not None and (current is None or current.etag != _quoted(wanted)):
            raise S3Error(412, "PreconditionFailed", "the object is not at that ETag (If-Match)")
        blob = bucket.put(key, body)
        return 200, {"etag": blob.etag}, b""

    def get(self, bucket: Bucket, key: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        blob = bucket.blobs.get(key)
        if blob is None:
            raise S3Error(404, "NoSuchKey", "the specified key does not exist")
        described = {"etag": blob.etag, "last-modified": formatdate(blob.modified, usegmt=True),
                     "content-type": "application/octet-stream", "accept-ranges": "bytes"}
        wanted = headers.get("if-match")
        if wanted is not None and wanted != "*" and _quoted(wanted) != blob.etag:
            raise S3Error(412, "PreconditionFailed", "the object is not at that ETag (If-Match)")
        unwanted = headers.get("if-none-match")
        if unwanted is not None and (unwanted == "*" or _quoted(unwanted) == blob.etag):
            return 304, described, b""
        spec = headers.get("range")
        if spec is None:
            return 200, described, blob.data
        first, last = _byte_range(spec, len(blob.data))
        described["content-range"] = f"bytes {first}-{last}/{len(blob.data)}"
        return 206, described, blob.data[first:last + 1]

    def list_objects(self, name: str, bucket: Bucket, query: dict[str, str]
                     ) -> tuple[int, dict[str, str], bytes]:
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        try:
            max_keys = min(int(query.get("max-keys", MAX_KEYS)), MAX_KEYS)
            after, skip_under = (_untoken(query["continuation-token"]) if "continuation-token" in query
                                 else (query.get("start-after", ""), False))
        except (ValueError, IndexError) as exc:  # UnicodeDecodeError and binascii.Error are ValueErrors
            raise S3Error(400, "InvalidArgument", f"bad max-keys or continuation-token: {exc}") from exc
        keys, prefixes, token = bucket.list(prefix, delimiter, after, skip_under, max_keys)
        root = ElementTree.Element("ListBucketResult", xmlns=XMLNS)
        for tag, text in (("Name", name), ("Prefix", prefix), ("KeyCount", str(len(keys) + len(prefixes))),
                          ("MaxKeys", str(max_keys)), ("IsTruncated", "true" if token else "false")):
            ElementTree.SubElement(root, tag).text = text
        if delimiter:
            ElementTree.SubElement(root, "Delimiter").text = delimiter
        for tag in ("ContinuationToken", "StartAfter"):
            value = query.get("continuation-token" if tag == "ContinuationToken" else "start-after")
            if value:
                ElementTree.SubElement(root, tag).text = value
        if token:
            ElementTree.SubElement(root, "NextContinuationToken").text = token
        for key in keys:
            blob = bucket.blobs[key]
            contents = ElementTree.SubElement(root, "Contents")
            for tag, text in (("Key", key), ("LastModified", _iso(blob.modified)), ("ETag", blob.etag),
                              ("Size", str(len(blob.data))), ("StorageClass", "STANDARD")):
                ElementTree.SubElement(contents, tag).text = text
        for common in prefixes:
            ElementTree.SubElement(ElementTree.SubElement(root, "CommonPrefixes"), "Prefix").text = common
        return 200, {"content-type": "application/xml"}, _xml(root)

    def delete_objects(self, bucket: Bucket, body: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            request = ElementTree.fromstring(body)  # noqa: S314 - loopback test tool; the broker's own requests
        except ElementTree.ParseError as exc:
            raise S3Error(400, "MalformedXML", str(exc)) from exc
        root = ElementTree.Element("DeleteResult", xmlns=XMLNS)
        quiet = (request.findtext(f"{{{XMLNS}}}Quiet") or request.findtext("Quiet")) == "true"
        for element in request.iter():
            if element.tag in ("Key", f"{{{XMLNS}}}Key") and element.text:
                bucket.delete(element.text)
                if not quiet:
                    ElementTree.SubElement(ElementTree.SubElement(root, "Deleted"), "Key").text = element.text
        return 200, {"content-type": "application/xml"}, _xml(root)


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _byte_range(spec: str, size: int) -> tuple[int, int]:
    """The first and last byte of a ``Range: bytes=...`` header (one range), or 416."""
    unit, _, span = spec.partition("=")
    first_text, sep, last_text = span.partition("-")
    try:
        if unit.strip() != "bytes" or not sep or "," in span:
            raise ValueError(spec)
        if not first_text:  # the last N bytes
            first, last = max(size - int(last_text), 0), size - 1
        else:
            first = int(first_text)
            last = min(int(last_text), size - 1) if last_text else size - 1
    except ValueError:
        first, last = size, -1
    if first > last or first >= size:
        raise S3Error(416, "InvalidRange", f"the range {spec!r} is not satisfiable for {size} bytes")
    return first, last


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def _xml(root: ElementTree.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="utf-8")


def _error(exc: S3Error, resource: str) -> bytes:
    root = ElementTree.Element("Error")
    for tag, text in (("Code", exc.code), ("Message", exc.message), ("Resource", resource),
                      ("RequestId", uuid.uuid4().hex)):
        ElementTree.SubElement(root, tag).text = text
    return _xml(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", action="append", default=[], help="a bucket to create at start")
    parser.add_argument("--log-requests", action="store_true", help="each request on stderr")
    args = parser.parse_args()
    uvicorn.run(Store(args.bucket, args.log_requests), host=args.host, port=args.port,
                log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
