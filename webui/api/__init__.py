"""The REST API (/sdapi/v1): routes, access control and the JSON edge."""
