"""The `/rtc/v1?join_request=` parameter: base64url(WrappedJoinRequest{gzip?(JoinRequest)}), both directions.

The server only decodes; `encode_join_request` exists so tests can build the exact parameter the SDK sends.
"""

from __future__ import annotations

import base64
import gzip

from livekit.protocol import rtc


class BadJoinRequest(ValueError):
    """The join_request parameter is not a wrapped JoinRequest."""


def _b64decode(text: str) -> bytes:
    # The SDK uses URL-safe base64; tolerate both alphabets and missing padding.
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def decode_join_request(param: str) -> rtc.JoinRequest:
    if not param:
        raise BadJoinRequest("missing join_request parameter")
    try:
        wrapped = rtc.WrappedJoinRequest()
        wrapped.ParseFromString(_b64decode(param))
        payload = wrapped.join_request
        if wrapped.compression == rtc.WrappedJoinRequest.GZIP:
            payload = gzip.decompress(payload)
        elif wrapped.compression != rtc.WrappedJoinRequest.NONE:
            raise BadJoinRequest(f"unknown compression {wrapped.compression}")
        join = rtc.JoinRequest()
        join.ParseFromString(payload)
        return join
    except BadJoinRequest:
        raise
    except Exception as e:  # bad base64, bad gzip, protobuf DecodeError: all mean "not a join request"
        raise BadJoinRequest(str(e)) from e


def encode_join_request(join: rtc.JoinRequest, compress: bool = True) -> str:
    payload = join.SerializeToString()
    wrapped = rtc.WrappedJoinRequest(
        join_request=gzip.compress(payload) if compress else payload,
        compression=rtc.WrappedJoinRequest.GZIP if compress else rtc.WrappedJoinRequest.NONE,
    )
    return base64.urlsafe_b64encode(wrapped.SerializeToString()).decode().rstrip("=")
