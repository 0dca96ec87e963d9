"""Using a model on data: the evaluation and prediction loops (``loops``), top-k and the prediction formats
(``predictions``; the files themselves are read and written column-wise by the library
:mod:`zoo.prediction_files`), ensembles of runs and prediction files (``ensemble``)."""
