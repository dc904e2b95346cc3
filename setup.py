from setuptools import find_packages, setup

setup(
    name="sslsv",
    version="0.1.0",
    description="Kaldi-style recipes for self-supervised speaker verification "
    "(SimCLR / MoCo with NT-Xent-AM)",
    python_requires=">=3.10",
    packages=find_packages(include=["sslsv", "sslsv.*"]),
    install_requires=[
        # torchaudio's wheel loads only beside the torch build it was made for.
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "kaldiio>=2.18",
        "numpy>=1.24",
        "scipy>=1.10",
        "soundfile>=0.12",
        "pandas>=2.0",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        # espeak-ng library and voices, for the offline synthetic mini corpus.
        "espeakng-loader==0.2.4",
        # Image-source room simulation for the simulated RIR set (when there is no RIRS_NOISES).
        "pyroomacoustics>=0.10",
        # Keeps torch and numpy/scipy thread pools from fighting over the cores (back end).
        "threadpoolctl>=3.0",
        # DET and score-histogram plots.
        "matplotlib>=3.7",
        # TensorBoard scalars written by the trainer.
        "tensorboard>=2.14",
        # Pseudo-labels: k-means (Lloyd, BLAS-chunked, OpenMP) and NMI/ARI, what it does well.
        "scikit-learn>=1.3",
        # Export (python -m sslsv.bin.export): torch's ONNX exporter needs onnx and onnxscript;
        # onnxruntime runs the exported file for the parity check (tested: onnx 1.23.2,
        # onnxscript 0.7.2, onnxruntime 1.32.0, opset 18).
        "onnx>=1.17",
        "onnxscript>=0.5",
        "onnxruntime>=1.20",
    ],
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3.5", "ruff>=0.6"]},
)
