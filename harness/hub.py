"""Reaching the Hugging Face Hub before a run starts: one short request, and each failure
a first run meets as one line naming the repo, the cause and the fix.

huggingface_hub's downloads (and so `datasets` and `transformers`) retry a
connection that fails five times with backoff, about 30 s, before they say the
Hub is unreachable; and a gated repo or a missing revision surfaces as an HTTP
error deep inside them. `check_repo` asks the Hub once, with huggingface_hub's
own metadata timeout (`HF_HUB_ETAG_TIMEOUT`) and no retry, whether the repo is
there at that revision and this machine may read it, and turns its exceptions
(`RepositoryNotFoundError`, `GatedRepoError`, `RevisionNotFoundError`, a
connection error) into a `HubAccessError`. With `HF_HUB_OFFLINE` set it asks
nothing: what is in the Hugging Face cache is all there is.

huggingface_hub is imported on first use only.
"""

from __future__ import annotations

import re
from typing import Literal

from harness.errors import HarnessError

RepoType = Literal["dataset", "model"]
LOGIN = "log in with `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN"
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)")


class HubAccessError(HarnessError):
    """A Hub repo that cannot be reached or read: unreachable, offline, gated, missing."""


def offline() -> bool:
    """Whether HF_HUB_OFFLINE is set (as huggingface_hub read it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def check_repo(
    repo_id: str,
    repo_type: RepoType,
    revision: str | None = None,
    *,
    repo_flag: str,
    revision_flag: str,
) -> str | None:
    """The commit `revision` of the repo is at, asked of the Hub in one short request;
    None with HF_HUB_OFFLINE set, when nothing is asked.

    Raises `HubAccessError` when the Hub cannot be reached, the repo does not exist (or
    is private to others), it is gated and this machine has no access, or it has no such
    revision. `repo_flag` and `revision_flag` are how the user sets them (`-S repo`),
    named in the fix.
    """
    if offline():
        return None
    import requests
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi()
    what = f"{repo_type} {repo_id}"
    try:
        info = api.repo_info(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            timeout=constants.HF_HUB_ETAG_TIMEOUT,
        )
        if info.gated:
            api.auth_check(repo_id, repo_type=repo_type)
    except GatedRepoError:
        raise HubAccessError(_gated(what, repo_page(repo_id, repo_type))) from None
    except RepositoryNotFoundError:
        raise HubAccessError(
            f"{what} is not on the Hugging Face Hub at {api.endpoint}, or is private: check "
            f"the name ({repo_flag}=OWNER/NAME); if it is private, {LOGIN}"
        ) from None
    except RevisionNotFoundError:
        raise HubAccessError(
            f"{what} has no revision {revision!r} on the Hub: give a branch, tag or commit "
            f"it has ({revision_flag}=...)"
        ) from None
    except HFValidationError:
        raise HubAccessError(
            f"{repo_id!r} is not a Hub {repo_type} id: give one as OWNER/NAME ({repo_flag}=...)"
        ) from None
    except OfflineModeIsEnabled:
        return None  # HF_HUB_OFFLINE set since huggingface_hub was imported
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "an error"
        raise HubAccessError(
            f"the Hugging Face Hub at {api.endpoint} answered HTTP {status} for {what}: "
            f"{_first_line(exc)}; try again later, or set HF_HUB_OFFLINE=1 to use the "
            "copy in the Hugging Face cache"
        ) from None
    except requests.RequestException as exc:
        raise HubAccessError(
            f"cannot reach the Hugging Face Hub at {api.endpoint} for {what} ({_reason(exc)}): "
            "check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the copy in "
            "the Hugging Face cache"
        ) from None
    return info.sha


def repo_page(repo_id: str, repo_type: RepoType) -> str:
    """The repo's page on the Hub, where its terms are accepted."""
    from huggingface_hub import constants

    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"{constants.ENDPOINT}/{prefix}{repo_id}"


def _gated(what: str, page: str) -> str:
    from huggingface_hub import get_token

    if get_token() is None:
        return (
            f"{what} is gated and you are not logged in to the Hugging Face Hub: accept its "
            f"terms at {page}, then {LOGIN}"
        )
    return (
        f"{what} is gated and your Hugging Face token has no access to it: accept its terms "
        f"at {page} with that token's account (and wait for approval if it asks), or use "
        "another token (HF_TOKEN)"
    )


def _reason(exc: BaseException) -> str:
    """What went wrong with a connection, in a few words: `Connection refused`, ..."""
    found = _ERRNO.findall(str(exc))
    if found:
        return found[-1].strip().rstrip(".")
    return type(exc).__name__


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
