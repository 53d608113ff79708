"""The public VideoMAE checkpoints as data, and how to fetch, verify and resolve them.

``resolve(src)`` turns what a user passes to ``--path_t`` / ``--finetune`` into a local file or folder:
an existing path (returned unchanged), a zoo name (`ENTRIES`), ``hf://org/name[@revision]`` (a
snapshot in the Hugging Face cache, through ``huggingface_hub``) or an ``http(s)://`` URL (a
verified download under ``torch.hub.get_dir()/checkpoints``). Command line::

    python -m models.zoo list
    python -m models.zoo fetch NAME|hf://org/name[@rev]|URL [--sha256 HEX] [--out DIR]
    python -m models.zoo verify FILE [--sha256 HEX]

No checksum is published for these checkpoints, so none is stored: ``fetch`` and ``verify`` print
the file's SHA-256 for the user to pin with ``--sha256``. A Hub snapshot is pinned by its revision.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from .weights import CheckpointError

# what the Hub snapshot needs for `models.weights.read_state_dict` (no TF / Flax weights, no processor)
HUB_FILES = [
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "*.bin.index.json",
]
NO_CHECKSUM = "no published checksum; SHA-256 of the file is {} (pin it with --sha256)"


@dataclass(frozen=True)
class Entry:
    """One checkpoint of the official VideoMAE release."""

    name: str  # what --path_t / --finetune / fetch accept
    arch: str  # our registry model that reads it (timm.create_model name)
    dataset: str  # K400 / SSv2 / UCF101
    stage: str  # "pre-train" (encoder + decoder) or "fine-tune" (classifier)
    epochs: int  # pre-training epochs
    drive: str  # the original release's Google Drive file (a web page, not a direct download)
    hub: str | None = None  # Hugging Face repo id of its transformers conversion, if one exists
    revision: str | None = None  # pinned Hub commit; None follows `main`
    url: str | None = None  # a direct download URL, where the release gives one
    sha256: str | None = None  # only a published checksum, never one computed here

    @property
    def source(self) -> str:
        if self.hub:
            return f"hf://{self.hub}" + (f"@{self.revision}" if self.revision else " (follows main)")
        if self.url:
            return self.url
        return f"Google Drive only (no direct download): {_drive_page(self.drive)}"


def _drive_page(file_id: str) -> str:
    return f"https://drive.google.com/file/d/{file_id}/view"


def _e(size: str, data: str, stage: str, epochs: int, drive: str, hub: str | None = None) -> Entry:
    letter = size[0]
    classes = {"K400": 400, "SSv2": 174, "UCF101": 101}[data]
    arch = f"pretrain_videomae_{size}_patch16_224" if stage == "pre-train" else f"vit_{size}_patch16_224"
    kind = f"pt{epochs}" if stage == "pre-train" else f"ft{epochs}"
    return Entry(
        name=f"videomae-{letter}-{data.lower()}-{kind}",
        arch=arch if stage == "pre-train" else f"{arch} ({classes} classes)",
        dataset=data, stage=stage, epochs=epochs, drive=drive, hub=hub and f"MCG-NJU/{hub}",
    )  # fmt: skip


# Read from MCG-NJU/VideoMAE's MODEL_ZOO.md (commit 5cefe18), which links each checkpoint on Google
# Drive. Hub ids: MCG-NJU's transformers conversions; rows without one have no Hub repo we found.
ENTRIES: dict[str, Entry] = {
    e.name: e
    for e in (
        _e("small", "K400", "pre-train", 1600, "1nU-H1u3eJ-VuyCveU7v-WIOcAVxs5Hww"),
        _e("small", "K400", "fine-tune", 1600, "1ygjLRm1kvs9mwGsP3lLxUExhRo6TWnrx", "videomae-small-finetuned-kinetics"),
        _e("base", "K400", "pre-train", 800, "1JfrhN144Hdg7we213H1WxwR3lGYOlmIn", "videomae-base-short"),
        _e("base", "K400", "fine-tune", 800, "18EEgdXY9347yK3Yb28O-GxFMbk41F6Ne", "videomae-base-short-finetuned-kinetics"),
        _e("base", "K400", "pre-train", 1600, "1tEhLyskjb755TJ65ptsrafUG2llSwQE1", "videomae-base"),
        _e("base", "K400", "fine-tune", 1600, "1MzwteHH-1yuMnFb8vRBQDvngV1Zl-d3z", "videomae-base-finetuned-kinetics"),
        _e("large", "K400", "pre-train", 1600, "1qLOXWb_MGEvaI7tvuAe94CV7S2HXRwT3", "videomae-large"),
        _e("large", "K400", "fine-tune", 1600, "1jX1CiqxSkCfc94y8FRW1YGHy-GNvHCuD", "videomae-large-finetuned-kinetics"),
        _e("huge", "K400", "pre-train", 1600, "1AJQR1Rsi2N1pDn9tLyJ8DQrUREiBA1bO"),
        _e("huge", "K400", "fine-tune", 1600, "104ouJZxSVPSAm0LwJXd6IzjdA_RGLqZi", "videomae-huge-finetuned-kinetics"),
        _e("small", "SSv2", "pre-train", 2400, "1p_I1aaONOeUvRmRQw1UT3-L2H8XJClHu"),
        _e("small", "SSv2", "fine-tune", 2400, "1ajlMrT06jiiM-5YjNI2X_UFyzsuYbbtZ", "videomae-small-finetuned-ssv2"),
        _e("base", "SSv2", "pre-train", 800, "181hLvyrrPW2IOGA46fkxdJk0tNLIgdB2", "videomae-base-short-ssv2"),
        _e("base", "SSv2", "fine-tune", 800, "1xZCiaPF4w7lYmLt5o1D5tIZyDdLtJAvH", "videomae-base-short-finetuned-ssv2"),
        _e("base", "SSv2", "pre-train", 2400, "1I18dY_7rSalGL8fPWV82c0-foRUDzJJk", "videomae-base-ssv2"),
        _e("base", "SSv2", "fine-tune", 2400, "1dt_59tBIyzdZd5Ecr22lTtzs_64MOZkT", "videomae-base-finetuned-ssv2"),
        _e("base", "UCF101", "pre-train", 3200, "1BHev4meNgKM0o_8DMRbuzAsKSP3IpQ3o"),
        _e("base", "UCF101", "fine-tune", 3200, "1MSyon6fPpKz7oqD6WDGPFK4k_Rbyb6fw"),
    )
}  # fmt: skip


def is_zoo_source(src: str) -> bool:
    """True for what `resolve` fetches rather than reads: a zoo name, ``hf://...`` or an http(s) URL."""
    return src in ENTRIES or src.startswith(("hf://", "http://", "https://"))


def resolve(src: str | os.PathLike) -> str:
    """A local file or folder for ``src`` (see the module docstring); `CheckpointError` in one line.

    An existing path is returned as given, and so is a missing one that looks like a path (its
    reader reports it as before); a bare word that is neither a path nor a zoo name is an error.
    """
    src = os.fspath(src)
    if os.path.exists(src):
        return src
    if is_zoo_source(src) or not any(c in src for c in (os.sep, "/", ".")):
        return fetch(src)
    return src


def fetch(src: str, out: str | None = None, sha256: str | None = None) -> str:
    """The local path of a zoo name, ``hf://`` id or URL, downloaded into ``out`` if not there yet."""
    entry = ENTRIES.get(src)
    if sha256 and (src.startswith("hf://") or (entry is not None and entry.hub)):
        raise CheckpointError(
            "--sha256 checks a downloaded file; pin a Hub snapshot with hf://org/name@<commit>"
        )
    if src.startswith("hf://"):
        return hub_snapshot(src, out)
    if src.startswith(("http://", "https://")):
        return download(src, out or _url_cache(), sha256)
    if entry is not None:
        return _fetch_entry(entry, out, sha256)
    close = difflib.get_close_matches(src, ENTRIES, n=1)
    raise CheckpointError(
        f"{src!r} is neither an existing file or folder nor a model-zoo name"
        + (f" (did you mean {close[0]}?)" if close else "")
        + "; `python -m models.zoo list` shows the names, or give hf://org/name or a URL"
    )


def _fetch_entry(entry: Entry, out: str | None, sha256: str | None) -> str:
    if entry.hub:
        rev = f"@{entry.revision}" if entry.revision else ""
        return hub_snapshot(f"hf://{entry.hub}{rev}", out)
    if entry.url:
        return download(entry.url, out or _url_cache(), sha256 or entry.sha256)
    raise CheckpointError(
        f"{entry.name} is on Google Drive only ({_drive_page(entry.drive)}), which has no direct download: "
        "save it from a browser and pass the file's path (`python -m models.zoo verify FILE` prints its SHA-256)"
    )


def _url_cache() -> str:
    import torch.hub

    return os.path.join(torch.hub.get_dir(), "checkpoints")  # where torch.hub keeps URL downloads


def hub_snapshot(uri: str, out: str | None = None) -> str:
    """The local folder of ``hf://org/name[@revision]``: the Hugging Face cache's snapshot (or
    ``out/org--name`` when ``out`` is given), downloaded by ``huggingface_hub`` when not there yet."""
    try:
        from huggingface_hub import errors as hub_errors
        from huggingface_hub import parse_hf_uri, snapshot_download
    except ImportError:
        raise CheckpointError(f"{uri} needs huggingface_hub: pip install huggingface_hub") from None
    try:
        ref = parse_hf_uri(uri)
    except hub_errors.HfUriError as err:
        raise CheckpointError(f"{uri}: {err}; write hf://org/name[@revision]") from None
    if ref.type != "model" or ref.path_in_repo:
        raise CheckpointError(
            f"{uri}: give a model repository, hf://org/name[@revision], not a path inside it"
        )
    where = f"hf://{ref.id}" + (f"@{ref.revision}" if ref.revision else "")
    local_dir = os.path.join(out, ref.id.replace("/", "--")) if out else None
    try:
        return snapshot_download(ref.id, revision=ref.revision, local_dir=local_dir, allow_patterns=HUB_FILES)
    except hub_errors.LocalEntryNotFoundError:
        raise CheckpointError(
            f"{where} is not in the Hugging Face cache and HF_HUB_OFFLINE/no network: run "
            f"`python -m models.zoo fetch {where}` on a machine with network, or pass a local path"
        ) from None
    except hub_errors.RevisionNotFoundError:
        raise CheckpointError(f"{where}: the repository has no revision {ref.revision!r}") from None
    except (hub_errors.RepositoryNotFoundError, hub_errors.GatedRepoError):
        raise CheckpointError(
            f"{where}: no such repository on the Hugging Face Hub, or it is private / gated (`hf auth login`)"
        ) from None
    except (hub_errors.HfHubHTTPError, hub_errors.IncompleteSnapshotError, OSError) as err:
        raise CheckpointError(f"{where}: {' '.join(str(err).split())}") from None


def download(url: str, out: str, sha256: str | None = None) -> str:
    """``url`` downloaded to ``out/<its file name>``, resumably and atomically; returns that path.

    Written by hand because ``torch.hub.download_url_to_file`` cannot resume: bytes go to
    ``out/.<name>.part`` (kept when the transfer stops, so the next call continues it with an HTTP
    Range request; a server that ignores Range restarts it), and only a complete file whose SHA-256
    matches ``sha256`` (when given) is renamed to the final name. A mismatch deletes the part.
    A file lock lets every rank of a run call this at once: one downloads, the others wait.
    """
    from filelock import FileLock

    name = os.path.basename(urlsplit(url).path)
    if not name:
        raise CheckpointError(f"{url} names no file; give the URL of the checkpoint file itself")
    os.makedirs(out, exist_ok=True)
    final = os.path.join(out, name)
    part = os.path.join(out, f".{name}.part")
    with FileLock(os.path.join(out, f".{name}.lock")):
        if not os.path.isfile(final):
            _transfer(url, part)
            digest = file_sha256(part)
            if sha256 and digest != sha256.lower():
                os.remove(part)
                raise CheckpointError(
                    f"{url}: SHA-256 {digest} does not match --sha256 {sha256}; the download was deleted"
                )
            os.replace(part, final)
        else:
            digest = file_sha256(final)
            if sha256 and digest != sha256.lower():
                raise CheckpointError(
                    f"{final} exists with SHA-256 {digest}, not --sha256 {sha256}; delete it to download again"
                )
    if not sha256:
        print(NO_CHECKSUM.format(digest))
    return final


def _transfer(url: str, part: str) -> None:
    """Appends the rest of ``url`` to ``part`` (all of it when the server ignores Range)."""
    start = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    done = start
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            if "text/html" in resp.headers.get("Content-Type", ""):
                raise CheckpointError(
                    f"{url} serves a web page, not a file (a Google Drive link?); give a direct URL"
                )
            if start and resp.status != 206:
                start = done = 0  # the server sent the whole file again
            length = resp.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            with open(part, "ab" if start else "wb") as fh:
                while chunk := resp.read(1 << 20):
                    fh.write(chunk)
                    done += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # "range not satisfiable": the part already holds the whole file
            return
        raise CheckpointError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (OSError, http.client.HTTPException) as err:
        if done == 0:
            raise CheckpointError(
                f"cannot download {url} ({type(err).__name__}: {err}); without network, download it "
                "elsewhere (`python -m models.zoo fetch`) and pass the local path"
            ) from None
        raise CheckpointError(
            f"{url}: the download stopped after {done} bytes ({type(err).__name__}: {err}); "
            f"run the same command again to resume it from {part}"
        ) from None
    if total is not None and done < total:
        raise CheckpointError(
            f"{url}: the download stopped after {done} of {total} bytes; run the same command again to resume it"
        )


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models.zoo", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="one line per checkpoint: name, architecture, source")
    fetch = sub.add_parser("fetch", help="download a checkpoint; prints its local path last")
    fetch.add_argument("source", help="a zoo name, hf://org/name[@revision] or an http(s) URL")
    fetch.add_argument("--sha256", default=None, help="expected SHA-256 of a downloaded file")
    fetch.add_argument("--out", default=None, help="folder (default: torch.hub's / the Hugging Face cache)")
    verify = sub.add_parser("verify", help="print a file's SHA-256 and compare it with --sha256")
    verify.add_argument("file")
    verify.add_argument("--sha256", default=None, help="expected SHA-256")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        width = max(map(len, ENTRIES))
        arch = max(len(e.arch) for e in ENTRIES.values())
        for e in ENTRIES.values():
            print(f"{e.name:<{width}}  {e.arch:<{arch}}  {e.source}")
    elif args.command == "verify":
        if not os.path.isfile(args.file):
            raise CheckpointError(f"{args.file} is not a file; verify takes a downloaded checkpoint file")
        digest = file_sha256(args.file)
        if args.sha256 is None:
            print(NO_CHECKSUM.format(digest))
        elif digest != args.sha256.lower():
            raise CheckpointError(f"{args.file}: SHA-256 {digest} does not match --sha256 {args.sha256}")
        else:
            print(f"{args.file}: SHA-256 {digest} matches --sha256")
    else:
        print(fetch(args.source, args.out, args.sha256))


if __name__ == "__main__":
    from common.cli import run_tool

    sys.exit(run_tool(main, errors=(CheckpointError, OSError)))
