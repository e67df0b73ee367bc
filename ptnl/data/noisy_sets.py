"""Real noisy-label benchmarks, read as they ship: Food-101N, CIFAR-10N and CIFAR-100N.

Their train labels are noisy as shipped (web labels, human annotators): ``train.labels`` is what
training sees, ``Dataset.train_true_labels`` the ground truth where it is known, -1 where not.

Food-101N (Lee et al., CVPR 2018; https://kuanghuei.github.io/Food-101N/): Food-101N_release.zip
unzipped under the data root (the folder may also be named food-101N/, JoAPR's name, or food-101n/,
NLPrompt's), and Food-101 for the test split (torchvision's download, or CoOp's food-101/)::

    Food-101N_release/images/<class_name>/<key>.jpg
    Food-101N_release/meta/classes.txt             "class_name", then the 101 names
    Food-101N_release/meta/imagelist.tsv           "class_name/key", then "<class>/<key>.jpg"
    Food-101N_release/meta/verified_{train,val}.tsv  "class_name/key\\tverification_label", then
                                                   "<class>/<key>.jpg\\t0|1" (1: the web label is right)
    food-101/images/<class>/<id>.jpg, food-101/meta/test.txt ("<class>/<id>"; classes.txt checked if there)

- train: every image of imagelist.tsv (~310k), in its order, labelled by its class folder (the web
  label), as NLPrompt (qunovo/NLPrompt, datasets/food101n.py: all images of the class folders).
  JoAPR (yunncheng/JoAPR, datasets/food101n.py) keeps an unseeded random 20% of each folder as
  train and 5% as val (web labels too); we have no val, as NLPrompt (the last epoch is evaluated).
- test: Food-101's official test split (meta/test.txt, 25,250 images), as JoAPR and the Food-101N
  page ("directly adopts the testing set of Food-101"). NLPrompt tests on CoOp's Food101 split
  (split_zhou_Food101.json), a random 30% of all Food-101 images: not the same images.
- classes: Food-101N's classes.txt, in its order, spelled as shipped ("apple_pie", as CoOp's
  Food101). It is alphabetical, so labels are those of NLPrompt (sorted folders) and JoAPR
  (Food-101's classes.txt); Food-101's classes.txt, where present, must list the same names.
- true labels: the verification labels of verified_train.tsv and verified_val.tsv (52,868 + 4,741
  train images; CleanNet's split of them, not ours): 1 gives the web label, 0 gives -1 (wrong,
  right class unknown), as do unverified images and those verified wrong by either file. Verified
  images not in imagelist.tsv are ignored. Neither NLPrompt nor JoAPR reads these files.

CIFAR-10N / CIFAR-100N (Wei et al., ICLR 2022; https://github.com/UCSC-REAL/cifar-10-100n): human
labels over torchvision's CIFAR train sets, in its order. torchvision's download, plus the label
files from that repo's data/ folder in cifar-n/ (or at the data root itself, or in a clone at
cifar-10-100n/data/)::

    cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}      cifar-n/CIFAR-10_human.pt
    cifar-100-python/{train,test,meta}                                 cifar-n/CIFAR-100_human.pt

- names: CIFAR10N-aggre, -worse, -random1..3 (the paper's Aggregate, Worst, Random 1-3: keys
  aggre_label, worse_label, random_labelK), CIFAR100N (noisy_label: fine labels), CIFAR10N-clean
  and CIFAR100N-clean (clean_label: the control for synthetic noise on the same images).
- test: CIFAR's test set with its own labels; no val. Class names: batches.meta's label_names,
  meta's fine_label_names. True labels: CIFAR's train labels, which must equal the file's
  clean_label (else it is the other CIFAR's file, or not in torchvision's order).
- images stay in the pickles: ``CifarImages`` decodes ``"train/000123"`` from row 123 (3072 bytes:
  the R, G, B planes of 32x32), reading the arrays once per process (it pickles as three strings).
- the .pt files are read with ``torch.load(weights_only=True)``: torch's allow-list has no numpy
  arrays, so numpy's array rebuild and its integer dtypes (nothing that runs code) are allowed.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ptnl.core.paths import data_root
from ptnl.data.base import Dataset, ImageFiles, ImageReadError, Split
from ptnl.data.specs import NOISY_SPECS

FOOD101N_PAGE = "https://kuanghuei.github.io/Food-101N/"
FOOD101N_MIRROR = "https://www.kaggle.com/datasets/kuanghueilee/food-101n"
FOOD101_URL = "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/"
CIFAR_N_URL = "https://github.com/UCSC-REAL/cifar-10-100n/tree/main/data"

FOOD101N_DIRS = ("Food-101N_release", "food-101N", "food-101n")  # as it unzips; JoAPR's; NLPrompt's
FOOD101N_META = ("classes.txt", "imagelist.tsv", "verified_train.tsv", "verified_val.tsv")
FOOD101_DIR = "food-101"
HUMAN_DIRS = ("cifar-n", ".", "cifar-10-100n/data")  # where a CIFAR-N label file is looked for, in order
CIFAR_ROW = 3 * 32 * 32


@dataclass(frozen=True)
class Cifar:
    folder: str  # torchvision's, under the data root
    train: tuple[str, ...]  # its pickles, in torchvision's order
    test: str
    meta: str
    names_key: str
    labels_key: str
    human: str  # CIFAR-N's label file
    archive: str  # what torchvision downloads
    torchvision: str


CIFAR = {
    "cifar10": Cifar("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                     "batches.meta", "label_names", "labels", "CIFAR-10_human.pt",
                     "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "CIFAR10"),
    "cifar100": Cifar("cifar-100-python", ("train",), "test", "meta", "fine_label_names", "fine_labels",
                      "CIFAR-100_human.pt", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                      "CIFAR100"),
}  # fmt: skip

# canonical name -> (what it reads, key of its CIFAR-N label file, other names it answers to): their specs
SETS = {s.name: (s.reads, s.labels_key, s.aliases) for s in NOISY_SPECS.values()}
NOISY_DATASETS = tuple(SETS)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES = {_key(alias): name for name, (_, _, aliases) in SETS.items() for alias in (name, *aliases)}


def noisy_name(name) -> str | None:
    """The canonical name of a noisy-label benchmark (case and punctuation ignored), or None."""
    return _ALIASES.get(_key(name)) if isinstance(name, str) else None


def _resolve(name, root) -> tuple[str, Path]:
    """The canonical name, and the data root (``root`` resolved, or data_root() when None)."""
    canonical = noisy_name(name)
    if canonical is None:
        raise ValueError(f"unknown noisy-label dataset {name!r}; known: {', '.join(NOISY_DATASETS)}")
    return canonical, Path(root).expanduser().resolve() if root is not None else data_root()


def _missing(name: str, root: Path, missing: Path) -> FileNotFoundError:
    """The one error for a benchmark not on disk: the missing file, the layout, where it comes from."""
    lines = [f"{name} is not on disk under {root} (no {missing}).", ""]
    source = SETS[name][0]
    if source == "food101n":
        release, food = root / FOOD101N_DIRS[0], root / FOOD101_DIR
        lines += [
            f"Food-101N: Food-101N_release.zip from {FOOD101N_PAGE} (or {FOOD101N_MIRROR}), unzipped as",
            f"  images: {release}/images/<class_name>/<key>.jpg",
            f"  lists:  {release}/meta/{{{','.join(FOOD101N_META)}}}",
            f"  ({FOOD101N_DIRS[1]}/ or {FOOD101N_DIRS[2]}/ in place of {FOOD101N_DIRS[0]}/ also do)",
            f"Food-101, for the test split: food-101.tar.gz from {FOOD101_URL}, unpacked as",
            f"  images: {food}/images/<class>/<id>.jpg",
            f"  split:  {food}/meta/test.txt",
            f'  or: python -c "import torchvision; torchvision.datasets.Food101({str(root)!r}, download=True)"',
        ]
    else:
        c = CIFAR[source]
        lines += [
            f"CIFAR, in torchvision's layout: {c.archive}, unpacked as",
            f"  {root / c.folder}/{{{','.join((*c.train, c.test, c.meta))}}}",
            f'  or: python -c "import torchvision; torchvision.datasets.{c.torchvision}({str(root)!r}, download=True)"',
            f"CIFAR-N's human labels: {c.human} from {CIFAR_N_URL}, at",
            f"  {root / HUMAN_DIRS[0] / c.human}   (or {root / c.human})",
        ]
    lines += ["", "Point $PTNL_DATA at the folder holding the datasets if they live elsewhere."]
    return FileNotFoundError("\n".join(lines))


# ----------------------------------------------------------------------------- Food-101N


def _release_dir(root: Path) -> Path | None:
    return next((root / d for d in FOOD101N_DIRS if (root / d / "meta" / FOOD101N_META[1]).is_file()), None)


def _lines(path: Path, header: str) -> list[tuple[int, str]]:
    """(line number, text) of the non-empty lines of ``path``, its header line left out if it has one."""
    rows = enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1)
    return [(n, t.strip()) for n, t in rows if t.strip() and not (n == 1 and t.strip() == header)]


def _classes(path: Path) -> list[str]:
    names = [t for _, t in _lines(path, "class_name")]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{path} must list each class name once, one a line, got {len(names)} lines")
    return names


def _labelled(path: Path, header: str, index: dict[str, int], suffix: str) -> tuple[list[str], list[int]]:
    """Refs ("<class>/<key>" + suffix) and labels (the class folder) of a list of images."""
    refs, labels = [], []
    for n, line in _lines(path, header):
        cls = line.partition("/")[0]
        if cls not in index or "/" not in line:
            raise ValueError(f"{path}, line {n}: expected '<class>/<image>' with a known class, got {line!r}")
        refs.append(line + suffix)
        labels.append(index[cls])
    return refs, labels


def _verified(paths: list[Path]) -> dict[str, bool]:
    """verified_*.tsv: ref -> whether its web label is right (verified more than once: each must say so)."""
    right: dict[str, bool] = {}
    for path in paths:
        for n, line in _lines(path, "class_name/key\tverification_label"):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1"):
                raise ValueError(f"{path}, line {n}: expected '<class>/<key>.jpg<TAB>0|1', got {line!r}")
            right[parts[0]] = right.get(parts[0], True) and parts[1] == "1"
    return right


def _load_food101n(root: Path) -> Dataset:
    name, release = "Food101N", _release_dir(root)
    if release is None:
        raise _missing(name, root, root / FOOD101N_DIRS[0] / "meta" / FOOD101N_META[1])
    meta, food_meta = release / "meta", root / FOOD101_DIR / "meta"
    for path in (*(meta / f for f in FOOD101N_META), food_meta / "test.txt"):
        if not path.is_file():
            raise _missing(name, root, path)
    classnames = _classes(meta / "classes.txt")
    if (food_meta / "classes.txt").is_file() and _classes(food_meta / "classes.txt") != classnames:
        raise ValueError(f"{food_meta / 'classes.txt'} and {meta / 'classes.txt'} must list the same classes")
    index = {c: i for i, c in enumerate(classnames)}
    refs, labels = _labelled(meta / "imagelist.tsv", "class_name/key", index, "")
    test_refs, test_labels = _labelled(food_meta / "test.txt", "", index, ".jpg")
    images, test_images = release / "images", root / FOOD101_DIR / "images"
    # One stat per split, as readers does: catches a wrong image folder without walking 310k files.
    for image_root, some in ((images, refs), (test_images, test_refs)):
        if some and not (image_root / some[0]).is_file():
            raise _missing(name, root, image_root / some[0])

    true = np.full(len(refs), -1, dtype=np.int64)
    position = {r: i for i, r in enumerate(refs)}
    for ref, right in _verified([meta / f for f in FOOD101N_META[2:]]).items():
        i = position.get(ref)
        if i is not None and right:
            true[i] = labels[i]
    train = Split(tuple(refs), np.asarray(labels, dtype=np.int64), ImageFiles(str(images), name, "train"))
    test = Split(tuple(test_refs), np.asarray(test_labels, dtype=np.int64),
                 ImageFiles(str(test_images), name, "test"))  # fmt: skip
    return Dataset(name, classnames, NOISY_SPECS[name].template, train, None, test, "food101n-release", str(images),
                   train_true_labels=true)  # fmt: skip


# ----------------------------------------------------------------------------- CIFAR-N

_ROWS: dict[tuple[str, ...], np.ndarray] = {}  # pickles -> their image rows, read once per process
# What unpickling a file that is no pickle of plain data raises (truncated, foreign, wrong classes).
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                  ImportError, IndexError)  # fmt: skip


def _text(x):
    return x.decode("latin1") if isinstance(x, bytes) else x


def _unpickle(path: str | Path) -> dict:
    """A CIFAR pickle as torchvision reads it (latin1: they are Python 2 pickles), keys as str."""
    try:
        with open(path, "rb") as f:
            raw = pickle.load(f, encoding="latin1")
    except _PICKLE_ERRORS as e:
        raise ValueError(f"{path} is not a CIFAR python pickle: {e!r}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path} is not a CIFAR python pickle (a dict), got a {type(raw).__name__}")
    return {_text(k): v for k, v in raw.items()}


def _read_pickles(paths: tuple[str, ...]) -> tuple[np.ndarray, list[dict]]:
    """The image rows of the CIFAR pickles ``paths`` stacked (uint8 [N, 3072]), and each one's dict."""
    entries = [_unpickle(p) for p in paths]
    for p, e in zip(paths, entries):
        x = e.get("data")
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != CIFAR_ROW:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"{p}: 'data' must be uint8 rows of {CIFAR_ROW} (3x32x32), got {got}")
    return np.concatenate([e["data"] for e in entries]), entries


@dataclass(frozen=True)
class CifarImages:
    """The image loader of a CIFAR split: ``"<split>/<i>"`` is row i of its pickles, as RGB 32x32.

    Holds only paths, so it pickles small (DataLoader workers); each process reads the rows once.
    """

    files: tuple[str, ...]  # the pickles holding the split's rows, in order
    dataset: str
    split: str

    def __call__(self, ref: str) -> Image.Image:
        rows = _ROWS.get(self.files)
        if rows is None:
            try:
                rows = _ROWS.setdefault(self.files, _read_pickles(self.files)[0])
            except ValueError as e:
                raise ImageReadError(f"{self.dataset} {self.split}: cannot read image {ref!r}: {e}") from e
        i = ref.rpartition("/")[2]
        if not i.isdigit() or int(i) >= len(rows):
            raise ImageReadError(f"{self.dataset} {self.split}: no image {ref!r} among {len(rows)} rows")
        return Image.fromarray(rows[int(i)].reshape(3, 32, 32).transpose(1, 2, 0))


def _labels(entries: list[dict], key: str, paths, n_classes: int) -> np.ndarray:
    out = []
    for p, e in zip(paths, entries):
        y = np.asarray(e.get(key, []), dtype=np.int64)
        if y.shape != (len(e["data"]),) or (len(y) and (y.min() < 0 or y.max() >= n_classes)):
            raise ValueError(f"{p}: '{key}' must hold one label in [0, {n_classes}) per row of 'data'")
        out.append(y)
    return np.concatenate(out)


def _numpy_globals() -> list:
    """What unpickling a numpy int array takes: its rebuild function (under numpy 2's and numpy 1's
    module name: the CIFAR-N files predate numpy 2), ndarray, dtype, and the integer dtype classes."""
    rebuild = np.zeros(1).__reduce__()[0]
    ints = {type(np.dtype(t)) for t in np.typecodes["AllInteger"]}
    return [rebuild, (rebuild, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype, *ints]


def _human_labels(path: Path, keys: tuple[str, ...], n: int, n_classes: int) -> dict[str, np.ndarray]:
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except (*_PICKLE_ERRORS, RuntimeError) as e:  # RuntimeError: torch's, for a file that is no zip
        raise ValueError(f"{path} is no CIFAR-N label file (a torch.save'd dict of int arrays): {e}") from e
    if not isinstance(raw, dict) or any(k not in raw for k in keys):
        got = sorted(map(str, raw)) if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"{path} must be a dict holding {list(keys)} ({CIFAR_N_URL}), got {got}")
    out = {}
    for k in keys:
        y = np.asarray(raw[k]).reshape(-1)
        if (
            len(y) != n
            or not np.issubdtype(y.dtype, np.integer)
            or (n and (y.min() < 0 or y.max() >= n_classes))
        ):
            raise ValueError(
                f"{path}: '{k}' must be {n} labels in [0, {n_classes}), one per train image in torchvision's "
                f"order, got {y.dtype} {y.shape}"
            )
        out[k] = y.astype(np.int64)
    return out


def _human_file(root: Path, c: Cifar) -> Path | None:
    return next((root / d / c.human for d in HUMAN_DIRS if (root / d / c.human).is_file()), None)


def _load_cifar(name: str, root: Path) -> Dataset:
    source, key, _ = SETS[name]
    c, folder = CIFAR[source], root / CIFAR[source].folder
    for f in (*c.train, c.test, c.meta):
        if not (folder / f).is_file():
            raise _missing(name, root, folder / f)
    human = _human_file(root, c)
    if human is None:
        raise _missing(name, root, root / HUMAN_DIRS[0] / c.human)
    names = _unpickle(folder / c.meta).get(c.names_key)
    if not isinstance(names, list | tuple) or not names:
        raise ValueError(f"{folder / c.meta} has no '{c.names_key}' list of class names")
    classnames = [str(_text(n)).strip() for n in names]

    splits = {}
    for part, files in (("train", c.train), ("test", (c.test,))):
        paths = tuple(str(folder / f) for f in files)
        rows, entries = _read_pickles(paths)
        labels = _labels(entries, c.labels_key, paths, len(classnames))
        _ROWS[paths] = rows  # the loader of this process needs not read them again
        refs = tuple(f"{part}/{i:06d}" for i in range(len(rows)))
        splits[part] = Split(refs, labels, CifarImages(paths, name, part))
    clean = splits["train"].labels
    keys = tuple(dict.fromkeys(("clean_label", key)))
    human_labels = _human_labels(human, keys, len(clean), len(classnames))
    if not np.array_equal(human_labels["clean_label"], clean):
        raise ValueError(
            f"{human}: its clean_label differs from the train labels of {folder} at "
            f"{int((human_labels['clean_label'] != clean).sum())} of {len(clean)} images: it must be "
            f"{c.human} ({CIFAR_N_URL}), over torchvision's {c.folder} in its order"
        )
    train = Split(splits["train"].refs, human_labels[key], splits["train"].image_loader)
    return Dataset(name, classnames, NOISY_SPECS[name].template, train, None, splits["test"], "cifar-n", str(folder),
                   train_true_labels=clean)  # fmt: skip


# ----------------------------------------------------------------------------- entry points


def load_noisy_set(name: str, root: str | Path | None = None) -> Dataset:
    """The benchmark ``name`` (one of NOISY_DATASETS, or an alias) from ``root`` (default data_root())."""
    name, root = _resolve(name, root)
    return _load_food101n(root) if SETS[name][0] == "food101n" else _load_cifar(name, root)


def noisy_on_disk(name: str, root: str | Path | None = None) -> bool:
    """Whether ``load_noisy_set(name, root)`` will find its files; cheap: a stat each, no image."""
    name, root = _resolve(name, root)
    source = SETS[name][0]
    if source == "food101n":
        release = _release_dir(root) or root / FOOD101N_DIRS[0]  # none: its imagelist.tsv is not there
        files = [root / FOOD101_DIR / "meta" / "test.txt", *(release / "meta" / f for f in FOOD101N_META)]
        return all(p.is_file() for p in files)
    c = CIFAR[source]
    files = [root / c.folder / f for f in (*c.train, c.test, c.meta)]
    return all(p.is_file() for p in files) and _human_file(root, c) is not None


def noisy_watched(name: str, root: str | Path | None = None) -> list[Path]:
    """The files and folders whose stat changes when what ``load_noisy_set(name, root)`` reads does."""
    name, root = _resolve(name, root)
    source = SETS[name][0]
    if source == "food101n":
        paths = [f"{d}/{f}" for d in FOOD101N_DIRS for f in ("images", *(f"meta/{m}" for m in FOOD101N_META))]
        paths += [f"{FOOD101_DIR}/{f}" for f in ("images", "meta/test.txt", "meta/classes.txt")]
    else:
        c = CIFAR[source]
        paths = [f"{c.folder}/{f}" for f in (*c.train, c.test, c.meta)] + [
            f"{d}/{c.human}" for d in HUMAN_DIRS
        ]
    return [root / p for p in paths]
