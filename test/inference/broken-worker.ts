// A worker script that cannot start, as when a module it imports is missing from an install.
throw new Error('this worker cannot start')
