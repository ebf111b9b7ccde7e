"""No secret from the corpus ever reaches the spool, the aggregate or the sink.

Secrets are planted everywhere a report draws from: the exception message,
chained causes, source lines, log records, argv and environment variables;
then every byte errmesh wrote on the 'machine' is searched for them.
"""

from __future__ import annotations

import json
import sys

from secrets_corpus import SECRETS

from conftest import Sandbox


def test_secrets_never_reach_the_spool_or_the_sink(sandbox: Sandbox) -> None:
    corpus = json.dumps([text for text, _ in SECRETS])
    code = """
        import json, logging, sys
        import node
        node.install(app="leaky", window=0)
        logging.basicConfig(level=logging.DEBUG)
        corpus = json.loads(sys.argv[1])
        log = logging.getLogger("leaky")
        for text in corpus:
            log.info("%s", text)
        for i, text in enumerate(corpus):
            try:
                try:
                    raise OSError(text)
                except OSError as inner:
                    raise RuntimeError(f"case {i}: {text}") from inner
            except RuntimeError as exc:
                node.capture_exception(exc)
        raise ValueError(corpus[0])
    """
    secret_env = {"DB_PASSWORD": "hunter2-but-longer", "GITHUB_TOKEN": "ghp_" + "Zz9" * 12}
    done = sandbox.python(code, corpus, "--password", "argv-secret-value", **secret_env)
    assert done.returncode == 1
    assert len(sandbox.issues()) >= 1
    # A stopped process leaves the WAL unmerged; search the raw bytes of
    # every file (database, WAL, issue files, index) as they are on disk.
    written = sandbox.all_bytes()
    for _, secret in SECRETS:
        assert secret.encode() not in written, f"leaked: {secret[:12]}..."
    for secret in (*secret_env.values(), "argv-secret-value"):
        assert secret.encode() not in written


def test_secrets_in_a_wrapped_commands_output_are_scrubbed(sandbox: Sandbox) -> None:
    token = "ghp_" + "Ab1" * 12
    done = sandbox.errmesh(
        "run",
        "--",
        sys.executable,
        "-c",
        f"import sys; print('error: auth failed for https://bob:{token}@git.example.com', file=sys.stderr); sys.exit(1)",
    )
    assert done.returncode == 1
    assert token in done.stderr  # the user's own terminal still sees the real output
    assert token.encode() not in sandbox.all_bytes()
