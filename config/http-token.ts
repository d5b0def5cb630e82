/**
 * An RFC 9110 token: what HTTP method names and header field names are made of. One
 * pattern for every place the config names either, so they accept exactly the same.
 */
export const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
