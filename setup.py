"""Chicago Taxi tip model: a TFX pipeline for LocalDagRunner and Kubeflow Pipelines.

Loose requirements here; the exact, tested set is in constraints.txt:
    pip install --ignore-requires-python -c constraints.txt -e .
(tfx 1.16 declares Requires-Python <3.11, but its wheels work on 3.11.)
"""

from setuptools import setup

setup(
    name='taxi-tfx-pipeline',
    version='0.1.0',
    description='Chicago Taxi tip prediction as a TFX pipeline on Kubeflow',
    python_requires='>=3.9,<3.12',
    packages=['taxi_model', 'components', 'pipeline', 'serving', 'monitoring', 'scheduler', 'release', 'provenance', 'cli',
              'schemas'],
    py_modules=['atomic_file'],
    package_data={'schemas': ['*.pbtxt'], 'release': ['approvers.yaml'], 'provenance': ['*.yaml']},
    install_requires=[
        'tfx>=1.16,<1.17',
        'tensorflow>=2.16,<2.17',
        'tensorflow-transform>=1.16,<1.17',
        'tensorflow-model-analysis>=0.47,<0.48',
        'tensorflow-data-validation>=1.16,<1.17',
        'ml-metadata>=1.16,<1.17',
        'apache-beam>=2.59,<2.60',
        'kfp>=2.7,<2.8',
        'tensorflow-serving-api>=2.16,<2.17',
        'APScheduler>=3.10,<4',
        # The release policy (release/approvers.yaml).
        'PyYAML>=6,<7',
    ],
    extras_require={'test': ['pytest', 'dockerfile-parse']},
    entry_points={'console_scripts': ['taxi-pipeline=cli.main:console_main']},
)
