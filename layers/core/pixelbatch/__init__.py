"""PixelBatch core: settings, domain, data access, services and imaging shared by every Lambda."""
