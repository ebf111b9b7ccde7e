"""The git side of a fake repository: blobs, commits, refs and file contents.

Just enough git for the draft-PR flow over REST (read the default branch's
head, create a branch ref, put a file on it, open a pull), with GitHub's
refusals, because those are what a client must get right:

- creating a ref that exists: 422 "Reference already exists" (a free
  compare-and-set), a ref name without ``refs/`` and two slashes: 422;
- reading a missing ref: 404;
- updating a ref to a commit that is not a descendant, without ``force``:
  422 "Update is not a fast forward";
- writing a file that exists without its ``sha``: 422; with a stale ``sha``:
  409; with the right one: a new commit, answered 200 (201 for a new file).

Blob shas are real git blob hashes; commit and tree shas are sha1s of their
contents, so equal inputs give equal shas across runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .errors import ApiError, not_found, validation_failed


def blob_sha(data: bytes) -> str:
    """The sha git gives a blob with these bytes (what GitHub reports as ``sha``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Commit:
    """One commit: a full snapshot of paths to blob shas."""

    sha: str
    tree_sha: str
    tree: dict[str, str] = field(repr=False)
    parents: tuple[str, ...]
    message: str
    time: float


@dataclass(frozen=True)
class FileWrite:
    """What ``PUT /contents/{path}`` did."""

    created: bool
    commit: Commit
    path: str
    blob_sha: str
    size: int


class GitStore:
    """Refs and commits of one repository."""

    def __init__(self, *, default_branch: str, now: float) -> None:
        self.blobs: dict[str, bytes] = {}
        self.commits: dict[str, Commit] = {}
        self.refs: dict[str, str] = {}
        readme = b"# fake repository\n"
        self.blobs[blob_sha(readme)] = readme
        root = self._commit({"README.md": blob_sha(readme)}, (), "Initial commit", now)
        self.refs[f"refs/heads/{default_branch}"] = root.sha

    def _commit(
        self, tree: dict[str, str], parents: tuple[str, ...], message: str, now: float
    ) -> Commit:
        tree_sha = hashlib.sha1(repr(sorted(tree.items())).encode()).hexdigest()
        seed = f"{tree_sha}|{','.join(parents)}|{message}|{now}|{len(self.commits)}"
        commit = Commit(
            sha=hashlib.sha1(seed.encode()).hexdigest(),
            tree_sha=tree_sha,
            tree=dict(tree),
            parents=parents,
            message=message,
            time=now,
        )
        self.commits[commit.sha] = commit
        return commit

    # -- refs ----------------------------------------------------------

    def get_ref(self, ref: str) -> tuple[str, str]:
        """``heads/main`` -> (``refs/heads/main``, sha); 404 when absent."""
        full = ref if ref.startswith("refs/") else f"refs/{ref}"
        if full not in self.refs:
            raise not_found()
        return full, self.refs[full]

    def create_ref(self, ref: str, sha: str) -> str:
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(422, f"{ref} is not a valid ref name.")
        if ref in self.refs:
            raise ApiError(422, "Reference already exists")
        if sha not in self.commits:
            raise ApiError(422, "Object does not exist")
        self.refs[ref] = sha
        return ref

    def update_ref(self, ref: str, sha: str, *, force: bool) -> str:
        full = f"refs/{ref}" if not ref.startswith("refs/") else ref
        if full not in self.refs:
            raise ApiError(422, "Reference does not exist")
        if sha not in self.commits:
            raise ApiError(422, "Object does not exist")
        if not force and not self.is_ancestor(self.refs[full], sha):
            raise ApiError(422, "Update is not a fast forward")
        self.refs[full] = sha
        return full

    def delete_ref(self, ref: str) -> None:
        full = f"refs/{ref}" if not ref.startswith("refs/") else ref
        if full not in self.refs:
            raise ApiError(422, "Reference does not exist")
        del self.refs[full]

    def is_ancestor(self, old: str, new: str) -> bool:
        """Whether ``old`` is ``new`` or one of its ancestors (a fast forward)."""
        todo, seen = [new], set()
        while todo:
            sha = todo.pop()
            if sha == old:
                return True
            if sha in seen or sha not in self.commits:
                continue
            seen.add(sha)
            todo.extend(self.commits[sha].parents)
        return False

    def branch_head(self, branch: str) -> Commit | None:
        sha = self.refs.get(f"refs/heads/{branch}")
        return self.commits[sha] if sha else None

    def resolve(self, ref: str) -> Commit:
        """A branch, tag or commit sha to its commit; 404 when unknown."""
        for full in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            if full in self.refs:
                return self.commits[self.refs[full]]
        if ref in self.commits:
            return self.commits[ref]
        raise ApiError(404, f"No commit found for the ref {ref}")

    # -- contents ------------------------------------------------------

    def read(self, path: str, ref: str) -> tuple[str, bytes] | list[tuple[str, str, int]] | None:
        """A file as (sha, bytes), a directory as [(path, sha, size)], or None."""
        tree = self.resolve(ref).tree
        path = path.strip("/")
        if path in tree:
            return tree[path], self.blobs[tree[path]]
        prefix = f"{path}/" if path else ""
        entries = sorted(p for p in tree if p.startswith(prefix))
        if not entries:
            return None
        return [(p, tree[p], len(self.blobs[tree[p]])) for p in entries]

    def write(
        self,
        path: str,
        data: bytes,
        *,
        branch: str,
        sha: str | None,
        message: str,
        now: float,
    ) -> FileWrite:
        """Commit ``data`` at ``path`` on ``branch`` with GitHub's sha rules."""
        head = self.branch_head(branch)
        if head is None:
            raise ApiError(404, f"Branch {branch} not found")
        path = path.strip("/")
        current = head.tree.get(path)
        if current is not None and sha is None:
            raise validation_failed("Contents", "sha", "missing_field", '"sha" wasn\'t supplied.')
        if sha is not None and sha != current:
            raise ApiError(409, f"{path} does not match {sha}")
        new_sha = blob_sha(data)
        self.blobs[new_sha] = data
        commit = self._commit({**head.tree, path: new_sha}, (head.sha,), message, now)
        self.refs[f"refs/heads/{branch}"] = commit.sha
        return FileWrite(
            created=current is None, commit=commit, path=path, blob_sha=new_sha, size=len(data)
        )
