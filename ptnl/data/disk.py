"""What is on disk, judged without training: image checks, the data identity of run ids, and
the one-line status `make plan` prints.

- ``check_images(split, refs=None)``: FileNotFoundError naming the missing images, ImageReadError
  the unreadable ones (a header read per file, ``unreadable``), before encoding.
- ``identity(name)``: ``content_identity`` (the split's fingerprint and every image's content) of
  what ``load_dataset(name)`` would return,
  ``MISSING`` or ``CORRUPT`` when it would fail; memoised on the stat of the files that pick the
  route and hold the split (``_watched``: the spec's folders, split file and ``files``).
- ``disk_status(name)``: a ``DiskStatus`` (state, one line) saying what is wrong, if anything.

The noisy-label benchmarks (``ptnl.data.noisy_sets``) are judged by loading them, their identity
memoised on the stat of ``noisy_watched``'s files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from ptnl.data.base import DECODE_ERRORS, ImageFiles, ImageReadError, Split
from ptnl.data.content import digest_of_digests, file_digests
from ptnl.data.noisy_sets import load_noisy_set, noisy_name, noisy_watched
from ptnl.data.readers import (
    coop_available,
    first_existing,
    imagenet_names,
    list_dir,
    load_coop,
    load_dataset,
    resolve_root,
)
from ptnl.data.registry import registered
from ptnl.data.specs import COOP_DATASETS_MD, FGVC_FILES, SPECS, TORCHVISION, Spec, resolve_name

MISSING = "missing"  # identity() of a dataset that is not on disk
CORRUPT = "corrupt"  # identity() of one whose split or class-name file does not parse

_PRESENT: dict[str, set[str]] = {}  # image folder -> refs check_images found whole in this process
JPEG_END = b"\xff\xd9"  # a JPEG's end-of-image marker: what a truncated file lacks


def unreadable(path: str) -> str | None:
    """Why the image file at ``path`` cannot be decoded, or None; judged cheaply. PIL parses the
    header and verifies what it can without decoding (a PNG's chunks and their CRCs); a JPEG
    must end with its end-of-image marker. A JPEG without one, or another format, is decoded in
    full, so a file the loader reads is never refused."""
    try:
        with Image.open(path) as img:
            fmt = img.format
            img.verify()
        if fmt == "PNG" or (fmt == "JPEG" and _ends_whole(path)):
            return None
        with Image.open(path) as img:
            img.load()
    except DECODE_ERRORS as e:
        return str(e) or type(e).__name__
    return None


def _ends_whole(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(max(os.fstat(f.fileno()).st_size - 64, 0))
        return f.read().rstrip(b"\0").endswith(JPEG_END)


def check_images(split: Split, refs=None) -> None:
    """Raise FileNotFoundError if an image of ``split`` (only ``refs`` of it, if given) is missing,
    ``ImageReadError`` if one cannot be decoded (``unreadable``: its header, a truncated end).

    One stat and one header read per ref not yet found whole in this process, so it can run
    right before encoding instead of a bad file surfacing minutes into it. A no-op for splits
    whose images are not files (toy, synthetic).
    """
    files = split.image_loader
    if not isinstance(files, ImageFiles):
        return
    present = _PRESENT.setdefault(files.root, set())
    todo = [r for r in dict.fromkeys(split.refs if refs is None else refs) if r not in present]
    missing = [r for r in todo if not os.path.isfile(files.path(r))]
    gone = set(missing)
    bad = {r: why for r in todo if r not in gone and (why := unreadable(files.path(r))) is not None}
    present.update(r for r in todo if r not in gone and r not in bad)
    if missing:
        shown = "\n  ".join(files.path(r) for r in missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{files.dataset} {files.split}: {len(missing)} of {len(todo)} images checked are missing under "
            f"{files.root}:\n  {shown}{more}\nRe-download the dataset, or check that its folder is laid "
            f"out as {COOP_DATASETS_MD} says."
        )
    if len(bad) == 1:
        [(ref, why)] = bad.items()
        raise ImageReadError(
            f"{files.dataset} {files.split}: cannot read image {files.path(ref)}: {why}. Re-download it or "
            "remove it from the split"
        )
    if bad:
        shown = "\n  ".join(f"{files.path(r)}: {why}" for r, why in list(bad.items())[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ImageReadError(
            f"{files.dataset} {files.split}: {len(bad)} of {len(todo)} images checked cannot be read under "
            f"{files.root}:\n  {shown}{more}\nRe-download them or remove them from the split"
        )


def _watched(spec: Spec) -> list[str]:
    """Paths under the data root whose stat changes when what ``load_dataset(auto)`` reads changes."""
    watched = list(spec.image_dirs)
    if spec.split_file:
        watched.append(f"{spec.folder}/{spec.split_file}")
    if spec.name == "FGVCAircraft":
        watched += [f"{d}/{f}" for d in spec.image_dirs for f in (*FGVC_FILES, "images")]
    if spec.name == "ImageNet":
        watched += [f"{spec.folder}/classnames.txt", *(f"{spec.image_dirs[0]}/{p}" for p in ("train", "val"))]
    if spec.torchvision:
        watched.append(TORCHVISION[spec.torchvision][0])
    return watched + list(spec.files)


def _stat(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


_IDENTITIES: dict[tuple[str, str], tuple[tuple, str]] = {}  # (dataset, root) -> (stat key, identity)
_TOY_IDENTITIES: dict[str, str] = {}  # toy tasks are code: fixed for the life of a process


def identity(name: str, root: str | Path | None = None) -> str:
    """A short stable string for the data a run on ``name`` reads: ``Dataset.fingerprint()`` of
    ``load_dataset(name, root)`` (``"<split_source>:<16 hex>"``), ``MISSING`` if it is not on disk,
    ``CORRUPT`` if its split or class-name file does not parse. Never raises for those, so run ids
    can be computed for a plan before the data is there; loading then gives the full error.

    Memoised per process, keyed by the (size, mtime_ns, inode) of every file and folder that picks
    the route or holds the split (``_watched``): editing a split file, or adding CoOp's over a
    torchvision download, is seen at the next call. Images added to or removed from class
    folders (ImageNet, the torchvision route's listed folders) within one process are not; the
    next process lists them again. A dataset registered in memory is its own ``fingerprint()``.
    """
    if isinstance(name, str) and (held := registered(name)) is not None:
        return content_identity(held)
    if isinstance(name, str) and name.lower().startswith("toy-"):
        if name not in _TOY_IDENTITIES:
            try:
                _TOY_IDENTITIES[name] = load_dataset(name).fingerprint()
            except ValueError:  # no such toy task: loading it says so, with the names that exist
                return MISSING
        return _TOY_IDENTITIES[name]
    root = resolve_root(root)
    if (noisy := noisy_name(name)) is not None:
        disk_key = tuple(_stat(p) for p in noisy_watched(noisy, root))
        return _memoised((noisy, str(root)), disk_key, lambda: load_noisy_set(noisy, root))
    spec = SPECS[resolve_name(name)]
    disk_key = tuple(_stat(root / p) for p in _watched(spec))
    return _memoised((spec.name, str(root)), disk_key, lambda: load_dataset(spec.name, root))


def content_identity(ds) -> str:
    """``ds.fingerprint()`` (split, labels, class names, template) joined with the content of every
    image file of its splits (``ptnl.data.content``: sha256 per file, cached by stat), as
    ``"<split_source>:<16 hex>"``. Images that are code (the toy world) or in memory add nothing:
    their fingerprint is the dataset's. The image folder is not hashed: the same files elsewhere
    are the same data. FileNotFoundError if an image is missing."""
    base = ds.fingerprint()
    files = []
    for part in ("train", "val", "test"):
        sp = getattr(ds, part)
        if sp is not None and isinstance(sp.image_loader, ImageFiles):
            files += [sp.image_loader.path(r) for r in sp.refs]
    if not files:
        return base
    images = digest_of_digests(file_digests(files))
    return f"{ds.split_source}:{hashlib.sha256(f'{base}{chr(10)}{images}'.encode()).hexdigest()[:16]}"


def _memoised(memo_key: tuple[str, str], disk_key: tuple, load) -> str:
    """``load().fingerprint()``, MISSING or CORRUPT, recomputed only when ``disk_key`` changes."""
    hit = _IDENTITIES.get(memo_key)
    if hit is not None and hit[0] == disk_key:
        return hit[1]
    try:
        ident = content_identity(load())
    except FileNotFoundError:
        ident = MISSING
    except ValueError:
        ident = CORRUPT
    _IDENTITIES[memo_key] = (disk_key, ident)
    return ident


class DiskStatus(NamedTuple):
    state: str  # "ok", "missing", "corrupt" or "no-split"
    message: str  # one line, for `make plan`


def disk_status(name: str, root: str | Path | None = None) -> DiskStatus:
    """Whether ``load_dataset(name, root)`` would work, judged cheaply enough for `make plan`.

    Split files are parsed (CoOp's JSON, FGVC's txt files, ImageNet's classnames.txt) and the
    first image of each split is stat'ed, as loading does; image folders are not listed (ImageNet:
    only train/'s class folders). The torchvision route is judged by its folder, as
    ``load_dataset``'s "auto" choice is: its own files are read only when it loads.
    """
    if isinstance(name, str) and registered(name) is not None:
        return DiskStatus("ok", f"{name}: registered in memory (ptnl.data.register_dataset)")
    if isinstance(name, str) and name.lower().startswith("toy-"):
        return DiskStatus("ok", f"{name}: toy task, rendered on demand")
    root = resolve_root(root)
    if (noisy := noisy_name(name)) is not None:
        return _noisy_status(noisy, root)
    spec = SPECS[resolve_name(name)]
    if spec.name == "ImageNet":
        return _imagenet_status(spec, root)
    if coop_available(spec, root):
        try:
            ds = load_coop(spec, root)
        except FileNotFoundError as e:
            return DiskStatus("missing", str(e).splitlines()[0])
        except ValueError as e:
            return DiskStatus("corrupt", f"{spec.name}: {e}")
        return DiskStatus(
            "ok", f"{spec.name}: {ds.split_source} ({_split_path(spec, root)}), images in {ds.root}"
        )
    if spec.torchvision is not None and (root / TORCHVISION[spec.torchvision][0]).is_dir():
        folder = root / TORCHVISION[spec.torchvision][0]
        return DiskStatus(
            "ok", f"{spec.name}: torchvision layout in {folder} (its official split, not CoOp's)"
        )
    images = first_existing(root, spec.image_dirs)
    if images is not None:
        return DiskStatus(
            "no-split",
            f"images found under {images} but the split file {_split_path(spec, root)} is missing "
            f"(get it from {spec.split_from})",
        )
    return DiskStatus(
        "missing",
        f"{spec.name} is not on disk under {root}; load_dataset({spec.name!r}) says which files it needs "
        "and where they come from",
    )


def _noisy_status(name: str, root: Path) -> DiskStatus:
    # Loading is the only check there is: the lists are the split (Food-101N's ~310k lines take ~1 s).
    try:
        ds = load_noisy_set(name, root)
    except FileNotFoundError as e:
        return DiskStatus("missing", str(e).splitlines()[0])
    except ValueError as e:
        return DiskStatus("corrupt", f"{name}: {e}")
    known = int((ds.train_true_labels >= 0).sum())
    return DiskStatus(
        "ok", f"{name}: {len(ds.train)} train images ({known} with a known true label), images in {ds.root}"
    )


def _split_path(spec: Spec, root: Path) -> Path:
    if spec.name == "FGVCAircraft":  # the official txt files, in whichever data folder holds them
        data_dir = next((root / d for d in spec.image_dirs if (root / d / FGVC_FILES[1]).is_file()), None)
        return (data_dir or root / spec.image_dirs[0]) / FGVC_FILES[1]
    return root / spec.folder / spec.split_file


def _imagenet_status(spec: Spec, root: Path) -> DiskStatus:
    image_root = root / spec.image_dirs[0]
    names_file = root / spec.folder / "classnames.txt"
    train, val = image_root / "train", image_root / "val"
    if not train.is_dir() and not val.is_dir():
        return DiskStatus(
            "missing",
            f"ImageNet is not on disk under {root} (no {image_root}/{{train,val}}/); load_dataset('ImageNet') "
            "says which files it needs and where they come from",
        )
    if not (train.is_dir() and val.is_dir()):
        absent = val if train.is_dir() else train
        return DiskStatus(
            "missing", f"ImageNet: no {absent} (class folders <wnid>/, as CoOp's DATASETS.md says)"
        )
    wnids = list_dir(train, dirs=True)  # 1000 names: the class folders, not the images
    if names_file.is_file():
        try:
            imagenet_names(names_file, wnids, train)
        except ValueError as e:
            return DiskStatus("corrupt", f"ImageNet: {e}")
        return DiskStatus("ok", f"ImageNet: imagenet-folders ({names_file}), images in {image_root}")
    if len(wnids) == 1000:
        return DiskStatus(
            "ok",
            f"ImageNet: imagenet-folders, images in {image_root} (no {names_file}: open_clip's class names, "
            "CLIP's list, in the same order)",
        )
    return DiskStatus(
        "no-split",
        f"images found under {image_root} but the class-name file {names_file} is missing "
        f"(get it from {spec.split_from})",
    )
