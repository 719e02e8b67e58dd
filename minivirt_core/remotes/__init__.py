"""Remotes: image repositories on S3-compatible object stores, plain HTTP(S), or a folder.

Layout (compatible with the original minivirt's repositories): ``<url>/tags/<tag>``
holds an image id as text; ``<url>/images/<id>.tgz`` holds the image as a gzip'd tar
with flat members. Pull reads them anonymously; push writes them with S3 credentials
(the bucket is the URL's last path segment) or, for ``file://`` remotes, to the folder.
"""

from .remote import PullResult, PushResult, Remote
from .store import RemoteStore

__all__ = ["PullResult", "PushResult", "Remote", "RemoteStore"]
