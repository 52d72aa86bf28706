"""A mean-opinion-score (MOS) study kit, as in Ledig et al. (CVPR 2017), Sec. 3.4.

- `prepare` (srgan_tf.mos.prepare): benchmark HR images + methods -> a study folder of anonymised images,
  calibration examples, repeated items and an SQLite database.
- `serve` (srgan_tf.mos.app): the raters' web page (FastAPI, uvicorn).
- `report` (srgan_tf.mos.report, .plot): MOS per method, paired Wilcoxon signed-rank tests, test-retest
  agreement, the score-distribution plot.

Run `python -m srgan_tf.mos --help`. The web server and the report need the `mos` extra
(`pip install 'srgan-tf[mos]'`); building a study needs only the base package.
"""
