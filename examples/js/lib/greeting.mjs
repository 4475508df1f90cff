export function greeting(prefix, name) {
  return `${prefix}, ${name}!`;
}
