// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'client/dist/**', 'data/**', 'covers/**', 'test-output/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', name: ['describe', 'it', 'test', 'suite'], package: 'node:test' }] },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      'no-console': 'error',
      // The client package is a workspace: imported by its name, never by a path into its sources.
      'no-restricted-imports': ['error', { patterns: [{ regex: '(^|/)client/src/', message: "import '@coverhelper/client' (or /protocol, /sign): the client package is a workspace" }] }],
    },
  },
  {
    // Functions a reader takes in at once. The machines are declarative tables (one setup() each) and are left out.
    files: ['src/**/*.ts', 'src/**/*.js', 'client/src/**/*.ts'],
    rules: { 'max-lines-per-function': ['error', { max: 100, skipBlankLines: true, skipComments: true }] },
  },
  {
    files: ['machines/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: '^(?!xstate$|@coverhelper/client/protocol$|\\./|\\.\\./machines/).*', message: 'machines import only xstate, each other and the wire protocol (its types)' }] }],
    },
  },
  { files: ['eslint.config.js'], ...tseslint.configs.disableTypeChecked },
  {
    // The dashboard's browser script: typed by its own tsconfig (lib DOM), browser globals only.
    files: ['src/admin/dashboard/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      parserOptions: { projectService: false, project: './tsconfig.dashboard.json', tsconfigRootDir: import.meta.dirname },
      globals: Object.fromEntries(
        ['window', 'document', 'location', 'sessionStorage', 'fetch', 'WebSocket', 'URL', 'URLSearchParams', 'requestAnimationFrame', 'HTMLElement', 'HTMLButtonElement',
          'HTMLInputElement', 'HTMLSelectElement', 'HTMLFormElement', 'HTMLDialogElement', 'HTMLProgressElement', 'Node', 'Response'].map((name) => [name, 'readonly']),
      ),
    },
  },
);
