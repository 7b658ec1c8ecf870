"""The operator's command line, `taxi-pipeline`: a dispatcher over each package's commands."""
