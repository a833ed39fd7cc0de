"""NATS-Bench per-epoch data: a reader of the benchmark's "simple" archive directories (Dong, Liu, Musial and Gabrys,
"NATS-Bench: Benchmarking NAS Algorithms for Architecture Topology and Size", TPAMI 2021; D-X-Y/NATS-Bench).

A directory such as ``NATS-tss-v1_0-3ffb9-simple`` (topology space, 15,625 NB201 cells) or ``NATS-sss-v1_0-50262-simple``
(size space, 32,768 channel strings) holds ``meta.pickle.pbz2`` (``meta_archs``: every architecture's text, in index
order) and one ``{index:06d}.pickle.pbz2`` per architecture: for each training schedule (``hp``: '12' and '200' epochs
in the topology space, '01', '12' and '90' in the size space) and each dataset and seed, the per-epoch train and
evaluation accuracies, losses and times, plus FLOPs, parameters and latency (``nats_bench/api_utils.py``
``ArchResults``/``ResultsCount`` state dicts). Files are read with ``darts.data.plain_pickle.load_plain``, one at a time
when first queried, and kept in a bounded cache.

``NATSArchive`` answers the columns of ``darts.data.tabular.Table``, named as the NB201 CSV names them, so the same
evaluator settings read either (the rule is in ``darts.data.nats_columns``)."""
from __future__ import annotations

import collections
import logging
import re
from pathlib import Path
from typing import Any

from darts.data.nats_columns import Column, column_names, parse_column
from darts.data.nats_records import Record, read_record
from darts.data.plain_pickle import load_plain
from darts.data.tabular import ArchitectureIndex, GenotypeText

log = logging.getLogger(__name__)
SUFFIX = ".pickle.pbz2"
META = "meta" + SUFFIX
_FILE = re.compile(r"(\d+)" + re.escape(SUFFIX))


class NATSArchive(ArchitectureIndex):
    """The metrics of every architecture of a NATS-Bench archive directory, by genotype of ``space`` or its text.

    Args:
        path: the archive directory (``meta.pickle.pbz2`` and one file per architecture).
        space: the space whose genotypes the archive's architecture strings are (NB201 for the topology archive, the
            NATS size space for the size archive).
        cache: architecture records kept in memory (least recently used dropped first).

    ``query(arch)`` gives the summary columns (``columns``: each dataset's validation and test accuracy at the end of
    every schedule, and its parameters, FLOPs and latency); ``query(arch, column)`` any column ``knows`` names, the
    mean over the trials (seeds) as NATS-Bench's ``get_more_info(..., is_random=False)``, or one trial's
    (``seed``, one of ``seeds(arch, column)``), as its ``is_random=<seed>``. A missing architecture file is a
    FileNotFoundError naming it.
    """

    per_trial = True  # answers one trial's value (``seed``) as well as the mean over trials
    howto = "a NATS-Bench archive directory (docs/nats.md)"

    def __init__(self, path: str | Path, space: GenotypeText, cache: int = 512):
        self.path = Path(path).expanduser()
        self.space, self.cache = space, cache
        if not (self.path / META).is_file():
            raise FileNotFoundError(f"{self.path} is not a NATS-Bench archive directory: it has no {META} "
                                    "(docs/nats.md says where to get NATS-tss-v1_0-3ffb9-simple and NATS-sss-v1_0-50262-simple)")
        self._index_archs(self._read_meta(), self.path / META)
        present = sorted(int(m.group(1)) for m in map(_FILE.fullmatch, (p.name for p in self.path.iterdir())) if m)
        if not present:
            raise ValueError(f"{self.path} holds no architecture file ({{index:06d}}{SUFFIX}) beside its {META}")
        self._records: collections.OrderedDict[int, Record] = collections.OrderedDict()
        sample = self.record(present[0])
        self.schedules = tuple(sorted(sample.schedules))  # epochs of each training schedule, e.g. (12, 200)
        self.columns = column_names(sample)
        log.info("NATS-Bench archive %s: %d architectures, %d with a file here, schedules %s epochs", self.path,
                 len(self.archs), len(present), "/".join(map(str, self.schedules)))

    def _read_meta(self) -> tuple[str, ...]:
        """The canonical text of every architecture of ``meta_archs`` (ValueError naming one the space cannot read)."""
        meta = load_plain(self.path / META)
        archs = meta.get("meta_archs") if isinstance(meta, dict) else None
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            raise ValueError(f"{self.path / META} has no list of architecture strings 'meta_archs'")
        texts = []
        for i, text in enumerate(archs):
            try:
                texts.append(self.space.to_text(self.space.parse(text)))
            except ValueError as err:
                raise ValueError(f"{self.path / META}: architecture {i} {text[:60]!r} is not a genotype of "
                                 f"{type(self.space).__name__} ({err}); is it the archive of another search space?") from None
        return tuple(texts)

    def index_of(self, arch: Any) -> int:
        """The archive's index of ``arch`` (KeyError when the space's genotype is not listed)."""
        text = self._key(arch)
        if text not in self._row:
            raise KeyError(f"architecture {text!r} is not listed in {self.path / META}")
        return self._row[text]

    def knows(self, column: str) -> bool:
        """Whether ``column`` names a value this archive's schedules hold (its datasets are checked when read)."""
        parsed = parse_column(column)
        return parsed is not None and (parsed.schedule is None or parsed.schedule in self.schedules)

    def query(self, arch: Any, column: str | None = None, seed: int | None = None) -> dict[str, float] | float:
        """The summary columns of ``arch`` as a dict, or the value of one ``column`` (the mean over trials, or the
        trial of ``seed``)."""
        record = self.record(self.index_of(arch))
        if column is None:
            values = {name: record.value(self._column(name), None) for name in self.columns}
            return {name: value for name, value in values.items() if value is not None}  # no latency measured
        return record.value(self._column(column), seed)

    def seeds(self, arch: Any, column: str) -> tuple[int, ...]:
        """The seeds of the trials behind ``column`` of ``arch`` (NATS-Bench ``get_dataset_seeds``)."""
        return self.record(self.index_of(arch)).seeds(self._column(column))

    def _column(self, column: str) -> Column:
        parsed = parse_column(column)
        if parsed is None or not self.knows(column):
            raise ValueError(f"unknown column {column!r} of the NATS-Bench archive {self.path} (schedules of "
                             f"{'/'.join(map(str, self.schedules))} epochs); the column names are in docs/nats.md")
        return parsed

    def record(self, index: int) -> Record:
        """The record of architecture ``index``, read from its file when not cached."""
        if index in self._records:
            self._records.move_to_end(index)
            return self._records[index]
        file = self._file(index)
        record = read_record(load_plain(file), file)
        if self._key(record.arch_str) != self.archs[index]:
            raise ValueError(f"{file} records architecture {record.arch_str!r}, but {META} lists {self.archs[index]!r} "
                             f"at index {index}")
        self._records[index] = record
        if len(self._records) > self.cache:
            self._records.popitem(last=False)
        return record

    def _file(self, index: int) -> Path:
        """``{index:06d}.pickle.pbz2``, else ``{index}.pickle.pbz2`` (NATS-Bench ``reload``); FileNotFoundError if neither."""
        for name in (f"{index:06d}{SUFFIX}", f"{index}{SUFFIX}"):
            if (self.path / name).is_file():
                return self.path / name
        raise FileNotFoundError(f"{self.path / f'{index:06d}{SUFFIX}'} is missing: no record of architecture {index} "
                                f"({self.archs[index]}) in this NATS-Bench archive; the full archive directory holds "
                                f"one file per architecture ({len(self.archs)}; docs/nats.md)")
