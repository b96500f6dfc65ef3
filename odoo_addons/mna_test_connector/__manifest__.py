{
    "name": "MNA Test Connector",
    "version": "18.0.1.0.0",
    "summary": "Test fixture for mit_network_audit: a tiny connector that calls an HTTP URL",
    "author": "MNA Test Vendor",
    "license": "LGPL-3",
    "depends": ["base"],
    "installable": True,
}
