"""Packaging of ssseg.

Plain install (pure Python, nothing is compiled, nothing warns)::

    pip install -e .
    SAM2_BUILD_CUDA=0 pip install -e ".[test]"   # tests compare against Meta's sam2; stop it compiling its CUDA op

Optional CUDA connected-components op (used by the SAM 2 mask post-processing on GPU; an OpenCV fallback gives the
same results everywhere else). It needs torch and a CUDA toolkit at build time, hence no build isolation::

    COMPILE_SAMV2=1 pip install --no-build-isolation -e .
"""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
SAMV2_DIR = os.path.join("ssseg", "modules", "models", "segmentors", "samv2")
SAMV2_EXTENSION = "ssseg.modules.models.segmentors.samv2._C"


def read_requirements(path: str) -> list:
    """Requirement specifiers of a requirements file, one per line, without comments and blank lines."""
    requirements = []
    with open(os.path.join(HERE, path), encoding="utf-8") as handle:
        for line in handle:
            requirement = line.split("#", 1)[0].strip()
            if requirement:
                requirements.append(requirement)
    return requirements


def samv2_extension() -> tuple:
    """``(ext_modules, cmdclass)``: the CUDA op when ``COMPILE_SAMV2=1``, nothing at all otherwise."""
    if os.environ.get("COMPILE_SAMV2", "0") != "1":
        return [], {}
    # torch is only needed (and only imported) when compiling.
    try:
        from torch.utils.cpp_extension import BuildExtension, CUDAExtension
    except ImportError as error:
        raise RuntimeError(
            "COMPILE_SAMV2=1 needs torch importable at build time; install torch first and build without "
            "isolation: COMPILE_SAMV2=1 pip install --no-build-isolation -e ."
        ) from error
    sources = [os.path.join(SAMV2_DIR, "csrc", name) for name in ("connected_components.cu", "bindings.cpp")]
    extension = CUDAExtension(SAMV2_EXTENSION, sources, extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3"]})
    return [extension], {"build_ext": BuildExtension}


def read_version() -> str:
    """``__version__`` of ssseg/__init__.py, read without importing the package."""
    with open(os.path.join(HERE, "ssseg", "__init__.py"), encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("ssseg/__init__.py does not define __version__")


def read_long_description() -> str:
    """README.md when present (it is in checkouts and sdists), else a one-line summary."""
    readme = os.path.join(HERE, "README.md")
    if not os.path.isfile(readme):
        return "ssseg: a segmentation toolbox whose flagship is a re-implementation of SAM 2 / SAM 2.1."
    with open(readme, encoding="utf-8") as handle:
        return handle.read()


EXT_MODULES, CMDCLASS = samv2_extension()

# Optional applications: each is imported only where it is used, and a missing one names its extra.
APP_EXTRAS = {
    "serve": ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9"],  # ssseg-samv2 serve
    "ray": ["ray[data]>=2.40"],  # --engine ray
    "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],  # ssseg-samv2 export, onnxdir=
}
EXTRAS = {
    **APP_EXTRAS,
    "coco": ["pycocotools"],
    # sam2 is only the reference the tests compare against; never imported by ssseg itself. httpx drives the API
    # tests, playwright a real (Debian) Chromium for the web app's browser tests.
    "test": ["pytest", "sam2==1.1.0", "ruff>=0.17,<0.18", "hypothesis", "httpx", "playwright"]
    + [req for reqs in APP_EXTRAS.values() for req in reqs],
}

setup(
    name="ssseg",
    version=read_version(),
    description="A segmentation toolbox with a clean re-implementation of SAM 2 / SAM 2.1 inference",
    long_description=read_long_description(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["ssseg", "ssseg.*"]),
    # The configs are Python modules of the ssseg.configs packages; the CUDA sources ship for source builds.
    package_data={
        "ssseg.modules.models.segmentors.samv2": ["csrc/*.cu", "csrc/*.cpp"],
        "ssseg.samv2": ["server/static/*"],  # the web app of `ssseg-samv2 serve` (plain HTML/CSS/JS)
    },
    install_requires=read_requirements("requirements.txt"),
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["ssseg-samv2=ssseg.samv2.cli:main"]},
    ext_modules=EXT_MODULES,
    cmdclass=CMDCLASS,
    zip_safe=False,
)
