"""scaling.data: datasets as webdataset shards, streamed to every rank (see docs/data.md).

Modules, one purpose each:

* ``annotations`` — readers of the official annotation files (COCO Karpathy, VQAv2, OK-VQA, GQA,
  A-OKVQA, TextVQA, TextCaps, AudioCaps, MSR-VTT, MSRVTT-QA, MSVD-QA, JSON lines)
* ``converters`` — ``scaling data convert``: annotations + media folder → shards + index.json
* ``shards`` — the shard format: writing shard sets and their index, finding and reading shards
* ``plan`` — which samples each (rank, worker) reads, in which order (pure function of the seeds)
* ``stream`` — ``build_loader``: the streaming loader (rank/worker split, equal epochs, bad samples)
* ``resume`` — the loader's JSON-able state and exact resume
* ``subset`` — low-data subsets by a seeded hash of the sample id
* ``preprocess`` — what the encoder expects (sizes, mean/std, frames, mel bins)
* ``augment`` — image/frame preprocessing, random resized crop, flip, RandAugment
* ``audio`` — audio decoding/resampling, AST log-mel filterbank, SpecAugment masks
* ``video`` — PyAV decoding and frame selection
* ``decode`` — raw shard sample → preprocessed sample
* ``text`` — prompt templates and tokenisation with safe truncation
* ``collate`` — batch dicts for training (right-padded) and generation (left-padded)
* ``features`` — ``scaling data cache-features``
* ``inspect`` — ``scaling data inspect``
* ``bench`` — ``scaling data bench``
* ``synthetic`` — tiny datasets in every official format (tests, smoke runs, the demo)
"""
