"""Mirrors and the resilient client: push to S3, the Hub and other nodes; download from
whichever source is alive, verifying every byte."""
