"""Offline shard writing: metadata and source videos -> webdataset tar shards with a manifest.

Run once before training (``shard_tools/make_shards.py``); nothing here runs at training time.
Loading the written shards is ``egovlpv2.data``'s job, which reads only the manifest format
(``egovlpv2.data.manifest``) from this side.
"""
