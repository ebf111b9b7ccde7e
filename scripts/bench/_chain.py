"""A 30-frame call chain that ends in a chained exception, for the benchmarks.

Real code (not synthesised frames), so that ``from_exception`` walks a real
traceback and ``linecache`` reads real source lines of about 60 characters.
The traceback has 30 frames: ``raise_error``, then ``run_cli`` down to
``read_cell``, the innermost. The error is a ``RecordError`` (a
``ValueError``) raised from a ``KeyError``, with numbers and a path in its
message for the signature to normalise.
"""

from __future__ import annotations

from typing import Any

#: Frames in the traceback of :func:`raise_error`'s exception.
DEPTH = 30  # 29 chain functions + raise_error


class RecordError(ValueError):
    """The benchmark's failure: a record that cannot be read."""


def run_cli(ctx: dict[str, Any]) -> Any:
    """The outermost frame: what a CLI's ``main`` would call."""
    return dispatch_command(ctx | {"argv": "sync --all", "profile": "default"})


def dispatch_command(ctx: dict[str, Any]) -> Any:
    return run_sync_job(ctx | {"command": "sync", "dry_run": False})


def run_sync_job(ctx: dict[str, Any]) -> Any:
    return open_session(ctx | {"job": "nightly", "retries": 3})


def open_session(ctx: dict[str, Any]) -> Any:
    return connect_remote(ctx | {"timeout": 30.0, "keepalive": True})


def connect_remote(ctx: dict[str, Any]) -> Any:
    return authenticate(ctx | {"endpoint": "api", "tls": True})


def authenticate(ctx: dict[str, Any]) -> Any:
    return refresh_token(ctx | {"scope": "read:sync", "force": False})


def refresh_token(ctx: dict[str, Any]) -> Any:
    return load_credentials(ctx | {"grant": "refresh_token", "ttl": 3600})


def load_credentials(ctx: dict[str, Any]) -> Any:
    return select_profile(ctx | {"cache_dir": "/tmp/acme-cache"})


def select_profile(ctx: dict[str, Any]) -> Any:
    return fetch_manifest(ctx | {"region": "eu-west-1", "tier": "gold"})


def fetch_manifest(ctx: dict[str, Any]) -> Any:
    return parse_manifest(ctx | {"version": 2, "strict": True})


def parse_manifest(ctx: dict[str, Any]) -> Any:
    return iterate_batches(ctx | {"schema": "v3", "encoding": "utf-8"})


def iterate_batches(ctx: dict[str, Any]) -> Any:
    return process_batch(ctx | {"batch_size": 512, "offset": 1024})


def process_batch(ctx: dict[str, Any]) -> Any:
    return validate_records(ctx | {"batch": 1182, "parallel": False})


def validate_records(ctx: dict[str, Any]) -> Any:
    return apply_schema(ctx | {"nullable": False, "max_errors": 10})


def apply_schema(ctx: dict[str, Any]) -> Any:
    return coerce_fields(ctx | {"columns": 14, "coerce": True})


def coerce_fields(ctx: dict[str, Any]) -> Any:
    return normalise_dates(ctx | {"tz": "UTC", "date_format": "%Y-%m-%d"})


def normalise_dates(ctx: dict[str, Any]) -> Any:
    return resolve_timezone(ctx | {"fallback_tz": "UTC", "dst": True})


def resolve_timezone(ctx: dict[str, Any]) -> Any:
    return lookup_region(ctx | {"zone_db": "/usr/share/zoneinfo"})


def lookup_region(ctx: dict[str, Any]) -> Any:
    return apply_override(ctx | {"override": "eu", "priority": 10})


def apply_override(ctx: dict[str, Any]) -> Any:
    return compute_checksum(ctx | {"algo": "sha1", "salted": False})


def compute_checksum(ctx: dict[str, Any]) -> Any:
    return write_staging(ctx | {"staging": "staging", "fsync": True})


def write_staging(ctx: dict[str, Any]) -> Any:
    return flush_buffer(ctx | {"buffer_bytes": 65536, "flush": True})


def flush_buffer(ctx: dict[str, Any]) -> Any:
    return encode_rows(ctx | {"codec": "utf-8", "errors": "strict"})


def encode_rows(ctx: dict[str, Any]) -> Any:
    return serialise_row(ctx | {"delimiter": ",", "quotechar": '"'})


def serialise_row(ctx: dict[str, Any]) -> Any:
    return quote_value(ctx | {"escapechar": "\\", "lineterminator": "\n"})


def quote_value(ctx: dict[str, Any]) -> Any:
    return escape_value(ctx | {"quoting": "minimal", "doublequote": True})


def escape_value(ctx: dict[str, Any]) -> Any:
    return lookup_column(ctx | {"column": "amount", "default": None})


def lookup_column(ctx: dict[str, Any]) -> Any:
    return read_cell(ctx | {"cell": (1182, 7), "cast": "decimal"})


def read_cell(ctx: dict[str, Any]) -> Any:
    try:
        return ctx["row"][ctx["column"]] * ctx.get("scale", 1)
    except KeyError as exc:
        where = f"record {ctx['batch']}-{ctx['cell'][0]} at offset {ctx['offset']}"
        raise RecordError(
            f"cannot read column {exc} of {where} in /var/lib/acme/batch-0042.csv"
        ) from exc


def raise_error() -> BaseException:
    """Run the chain and return the exception it raised (with its traceback)."""
    try:
        run_cli({"row": {"id": 1182, "currency": "EUR"}})
    except RecordError as exc:
        return exc
    raise AssertionError("the chain did not fail")
