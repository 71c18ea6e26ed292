"""Writing result files the way the command line does (a temporary name, then a rename)."""
import os


def save_texts(directory, named_texts):
    """Writes each (file name, text) into DIRECTORY; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, text in named_texts:
        path = os.path.join(directory, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        paths.append(path)
    return tuple(paths)
