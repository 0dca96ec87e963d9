"""The YouTube-8M 2019 segment task: scoring 5-frame segments (``task``), the best segments per class
(``topsegments``), and the sample workflow of ``zoo run --segments``."""
