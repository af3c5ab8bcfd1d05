"""An offline stand-in for Microsoft Graph and the Microsoft identity platform.

Used by the tests, the benchmarks and the demo; the bridge itself never imports it.
"""
