"""Using a model on data: the evaluation and prediction loops (``loops``), top-k and the prediction formats
(``predictions``), prediction files read and written column-wise (``prediction_files``, through
polars), ensembles of runs and prediction files (``ensemble``)."""
