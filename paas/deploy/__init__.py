"""The deploy pipeline: the only package that knows the order build, release, run, check, route, retire."""
